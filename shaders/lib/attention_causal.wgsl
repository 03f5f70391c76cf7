// Which keys a query sees, shared by the attention kernels that take `params.causal`,
// `params.kvLen` and `params.qOffset`: query t sits at absolute position qOffset + t.

// Keys [0, end) visible to query row t: j ≤ qOffset + t when causal, and always j < kvLen.
fn key_end(t: u32) -> u32 {
  if (params.causal != 0u) { return min(params.kvLen, params.qOffset + t + 1u); }
  return params.kvLen;
}
