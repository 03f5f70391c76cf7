// MoE gather and its backward: row copies and row sums through an index, one thread per output
// element. Both entries share one binding set (declarations in web/src/gpu/ops/moe.ts).
//   gather_rows:  src = x (T, C),    idx = order (N),   dst = xs (N, C)   dst[r] = src[⌊idx[r]/k⌋]
//   sum_rows:     src = dxs (N, C),  idx = slotRow (N), dst = dx (T, C)   dst[t] = Σ_j src[idx[t·k+j]]
// params.rows: dst rows; params.srcRows: src rows (indices are clamped to it).

@compute @workgroup_size(WG_X)
fn gather_rows(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG_X;
  if (i >= params.rows * params.C) { return; }
  let r = i / params.C;
  let c = i % params.C;
  let t = min(u32(max(idx[r], 0i)) / params.k, params.srcRows - 1u);
  dst[i] = src[t * params.C + c];
}

@compute @workgroup_size(WG_X)
fn sum_rows(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG_X;
  if (i >= params.rows * params.C) { return; }
  let t = i / params.C;
  let c = i % params.C;
  var acc = 0.0;
  for (var j = 0u; j < params.k; j++) {
    let r = min(u32(max(idx[t * params.k + j], 0i)), params.srcRows - 1u);
    acc += src[r * params.C + c];
  }
  dst[i] = acc;
}
