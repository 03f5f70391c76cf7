// Elementwise ops over flat f32 arrays. Bindings and `params` are generated from the
// declarations in web/src/gpu/ops/elementwise.ts; WG_X comes from the variant.
// The grid may be 2-D when n exceeds the per-dimension workgroup limit.

fn flat_index(gid: vec3u, nwg: vec3u) -> u32 {
  return gid.x + gid.y * nwg.x * WG_X;
}

// out = a + b          a, b, out: (n)
@compute @workgroup_size(WG_X)
fn add(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat_index(gid, nwg);
  if (i >= params.n) { return; }
  out[i] = a[i] + b[i];
}
