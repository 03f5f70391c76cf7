// MoE combine: out[t] = Σ_j weights[t, j]·ys[slotRow[t·k + j]], one thread per output element,
// summed in j order (deterministic).
//   ys: (N, C)   slotRow: i32 (N)   weights: (T, k)   out: (T, C)      N = T·k

@compute @workgroup_size(WG_X)
fn combine(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG_X;
  if (i >= params.T * params.C) { return; }
  let t = i / params.C;
  let c = i % params.C;
  var acc = 0.0;
  for (var j = 0u; j < params.k; j++) {
    let s = t * params.k + j;
    let r = min(u32(max(slotRow[s], 0i)), params.N - 1u);
    acc += weights[s] * ys[r * params.C + c];
  }
  out[i] = acc;
}
