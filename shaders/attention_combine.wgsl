// Merges the kv splits of attention_decode.wgsl (flash-decoding): each split s attended to its
// own key range and wrote a normalised out_s and its log-sum-exp lse_s, so
//   lse = log Σ_s exp(lse_s),   out = Σ_s exp(lse_s − lse)·out_s   (splits summed in order).
// Bindings and `params` are generated from web/src/gpu/ops/attention.ts.
//   part_out: (splits, T, Hq, D)    part_lse: (splits, Hq, T)    out: (T, Hq, D)    lse: (Hq, T)
// One thread per output element; the thread of d = 0 also writes lse.

@compute @workgroup_size(WG_X)
fn attn_combine(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let idx = gid.x + gid.y * nwg.x * WG_X;
  if (idx >= params.n) { return; } // n = T·Hq·D
  let th = idx / params.D; // t·Hq + h
  let t = th / params.Hq;
  let h = th % params.Hq;
  let li = h * params.T + t;
  let per_lse = params.Hq * params.T;
  // Split 0 holds key 0, visible to every row: its lse is finite, so mx is.
  var mx = part_lse[li];
  for (var s = 1u; s < params.splits; s++) { mx = max(mx, part_lse[s * per_lse + li]); }
  var wsum = 0.0f;
  var acc = 0.0f;
  for (var s = 0u; s < params.splits; s++) {
    let w = exp(part_lse[s * per_lse + li] - mx); // 0 for a split that saw none of the row's keys
    wsum += w;
    acc += w * part_out[s * params.n + idx];
  }
  out[idx] = acc / wsum;
  if (idx % params.D == 0u) { lse[li] = mx + log(wsum); }
}
