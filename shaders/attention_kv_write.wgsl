// Writes new keys or values into an f16 KV cache, rounding each to f16 (an f32 cache is written
// with a buffer copy instead). Bindings, `params` and T = f16 are generated from the declaration
// in web/src/gpu/ops/attention.ts.
//   x: (T, Hkv, D) f32, flattened to params.n values
//   cache: (S, Hkv, D) f16; rows [pos, pos + T) start at element params.offset = pos·Hkv·D
// One thread per value; the grid may be 2-D past 65535 workgroups.

@compute @workgroup_size(WG_X)
fn kv_write(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG_X;
  if (i >= params.n) { return; }
  cache[params.offset + i] = T(x[i]);
}
