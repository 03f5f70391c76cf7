// out (M, N) = x (M, K) · dequant(w)ᵀ with w in Q8_0 blocks of 32 along K (q8 layout of
// web/src/gpu/cpu/quant.ts: per block one f32 scale word, then 8 words of 4 int8).
// Bindings and `params` come from MATMUL_Q8 in web/src/gpu/ops/quant.ts.
//   x: (M, K) f32   w: (N, K/32 blocks × 9 words) u32   out: (M, N) f32;  K % 32 == 0
// Each thread owns one column n and TM rows of x (clamped loads, guarded stores): it unpacks each
// weight block once and reuses it for TM rows. Per block the int8·x dot product is summed first,
// then scaled, as in the CPU twin. Grid: (ceil(N / WG_X), ceil(M / TM)).

fn xrow4(r: u32, k: u32) -> vec4f {
  let p = r * params.K + k;
  return vec4f(x[p], x[p + 1u], x[p + 2u], x[p + 3u]);
}

fn store(r: u32, n: u32, v: f32) {
  if (r < params.M) { out[r * params.N + n] = v; }
}

@compute @workgroup_size(WG_X)
fn matmul_q8(@builtin(global_invocation_id) gid: vec3u) {
  let n = gid.x;
  if (n >= params.N) { return; }
  let M = params.M;
  let m0 = gid.y * TM;
  let r0 = min(m0, M - 1u); let r1 = min(m0 + 1u, M - 1u);
  let r2 = min(m0 + 2u, M - 1u); let r3 = min(m0 + 3u, M - 1u);
  let nbk = params.K / 32u;
  var acc = vec4f(0.0); // rows r0..r3
  for (var j = 0u; j < nbk; j++) {
    let base = (n * nbk + j) * 9u;
    let s = bitcast<f32>(w[base]);
    var d = vec4f(0.0);
    for (var t = 0u; t < 8u; t++) {
      let word = bitcast<i32>(w[base + 1u + t]);
      let qv = vec4f(f32(extractBits(word, 0u, 8u)), f32(extractBits(word, 8u, 8u)),
                     f32(extractBits(word, 16u, 8u)), f32(extractBits(word, 24u, 8u)));
      let k = j * 32u + t * 4u;
      d.x += dot(qv, xrow4(r0, k));
      if (TM > 1u) { d.y += dot(qv, xrow4(r1, k)); }
      if (TM > 2u) { d.z += dot(qv, xrow4(r2, k)); d.w += dot(qv, xrow4(r3, k)); }
    }
    acc += s * d;
  }
  store(m0, n, acc.x);
  if (TM > 1u) { store(m0 + 1u, n, acc.y); }
  if (TM > 2u) { store(m0 + 2u, n, acc.z); store(m0 + 3u, n, acc.w); }
}
