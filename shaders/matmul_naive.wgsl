// The textbook matmul, kept as the benchmark's baseline: one thread per output, no tiling,
// no register blocking. Bindings and `params` come from MATMUL_NAIVE in web/src/gpu/ops/matmul.ts.
//   a: (M, K)   b: (K, N)   out: (M, N)
// Grid: (ceil(N / WG_X), ceil(M / WG_Y)).
@compute @workgroup_size(WG_X, WG_Y)
fn matmul_naive(@builtin(global_invocation_id) gid: vec3u) {
  let n = gid.x;
  let m = gid.y;
  if (m >= params.M || n >= params.N) { return; }
  var s = 0.0;
  for (var k = 0u; k < params.K; k++) {
    s += a[m * params.K + k] * b[k * params.N + n];
  }
  out[m * params.N + n] = s;
}
