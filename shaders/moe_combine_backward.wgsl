// MoE combine backward, one workgroup per slot s = t·k + j (row r = slotRow[s]):
//   dys[r, :] = weights[s]·dout[t, :]          (slots → rows is a permutation: no write races)
//   dweights[s] = dout[t, :]·ys[r, :]          (fixed-shape tree reduction: deterministic)
//   ys: (N, C)   slotRow: i32 (N)   weights: (T, k)   dout: (T, C)   dys: (N, C)   dweights: (T, k)

var<workgroup> red: array<f32, WG_X>;

@compute @workgroup_size(WG_X)
fn combine_backward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let s = wid.x + wid.y * nwg.x;
  if (s >= params.T * params.k) { return; }
  let t = s / params.k;
  let r = min(u32(max(slotRow[s], 0i)), params.N - 1u);
  let w = weights[s];
  var acc = 0.0;
  for (var c = lid; c < params.C; c += WG_X) {
    let d = dout[t * params.C + c];
    dys[r * params.C + c] = w * d;
    acc += d * ys[r * params.C + c];
  }
  red[lid] = acc;
  workgroupBarrier();
  for (var h = WG_X / 2u; h > 0u; h = h / 2u) {
    if (lid < h) { red[lid] += red[lid + h]; }
    workgroupBarrier();
  }
  if (lid == 0u) { dweights[s] = red[0]; }
}
