// MoE combine backward, two barrier-free passes over one binding set (s = t·k + j, r = slotRow[s]):
//   combine_backward_dys:      dys[r, c] = weights[s]·dout[t, c]   one thread per element of dys's
//                              slots (slots → rows is a permutation: no write races)
//   combine_backward_dweights: dweights[s] = dout[t, :]·ys[r, :]   one thread per slot, serial
//                              sum over c (deterministic; a slot's dot is too short to split)
//   ys: (N, C)   slotRow: i32 (N)   weights: (T, k)   dout: (T, C)   dys: (N, C)   dweights: (T, k)

fn row_of(s: u32) -> u32 {
  return min(u32(max(slotRow[s], 0i)), params.N - 1u);
}

@compute @workgroup_size(WG_X)
fn combine_backward_dys(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG_X;
  if (i >= params.T * params.k * params.C) { return; }
  let s = i / params.C;
  let c = i % params.C;
  let t = s / params.k;
  dys[row_of(s) * params.C + c] = weights[s] * dout[t * params.C + c];
}

@compute @workgroup_size(WG_X)
fn combine_backward_dweights(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let s = gid.x + gid.y * nwg.x * WG_X;
  if (s >= params.T * params.k) { return; }
  let t = s / params.k;
  let r = row_of(s);
  var acc = 0.0;
  for (var c = 0u; c < params.C; c++) { acc += dout[t * params.C + c] * ys[r * params.C + c]; }
  dweights[s] = acc;
}
