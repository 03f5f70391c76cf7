// Embedding lookup (gather). Bindings and `params` are generated from the declaration in
// web/src/gpu/ops/embedding.ts.
//   ids:   (T) i32 token ids, validated on the host; out-of-range ids are clamped to [0, V)
//          so a bad id reads a wrong row, never out of bounds
//   table: (V, C)
//   out:   (T, C)
//   params.T: u32, params.C: u32, params.V: u32
// One thread per output element; the grid may be 2-D past 65535 workgroups.

@compute @workgroup_size(WG_X)
fn embedding(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG_X;
  if (i >= params.T * params.C) { return; }
  let t = i / params.C;
  let c = i % params.C;
  let id = u32(clamp(ids[t], 0i, i32(params.V) - 1i));
  out[i] = table[id * params.C + c];
}
