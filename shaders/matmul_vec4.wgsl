// Matrix multiply with vec4 storage loads, for aligned operands: C = alpha·A·B + bias
// (matmul_vec4: untransposed, K % 4 == 0, N % 4 == 0; gemv_vec4_t: M = 1, b (N, K), K % 4 == 0).
// Bindings and `params` come from MATMUL_VEC4 in web/src/gpu/ops/matmul.ts (variant: WG_X/WG_Y,
// HAS_BIAS). Requires K % 4 == 0 and N % 4 == 0 (the builder checks); otherwise the scalar
// kernels of shaders/matmul.wgsl run.
//   a:    (B, M, K/4) vec4 — four consecutive k of one row
//   b:    (B?, K, N/4) vec4 — four consecutive n of one row
//   bias: (N) f32, read only when HAS_BIAS
//   out:  (B, M, N) f32
// Each thread owns an 8×8 block of C and steps K four at a time: per step 8 vec4 loads of A and
// 8 of B feed 256 multiply-adds (the scalar 8×8 kernel needs 64 loads for the same work). On
// software adapters every load is a per-lane gather, so fewer, wider loads pay.
// Grid: (ceil(N / (8·WG_X)), ceil(M / (8·WG_Y)), B).

fn store_row(cbase: u32, r: u32, c0: u32, acc: vec4f) {
  if (r >= params.M) { return; }
  let o = cbase + r * params.N;
  var v = acc * params.alpha;
  if (HAS_BIAS) {
    v += vec4f(bias[min(c0, params.N - 1u)], bias[min(c0 + 1u, params.N - 1u)],
               bias[min(c0 + 2u, params.N - 1u)], bias[min(c0 + 3u, params.N - 1u)]);
  }
  // N % 4 == 0, so a vec4 of columns is either wholly inside or wholly outside.
  if (c0 < params.N) {
    out[o + c0] = v.x; out[o + c0 + 1u] = v.y; out[o + c0 + 2u] = v.z; out[o + c0 + 3u] = v.w;
  }
}

// acc += a.x·b0 + a.y·b1 + a.z·b2 + a.w·b3 (four k steps of one row).
fn fma4(acc: vec4f, a: vec4f, b0: vec4f, b1: vec4f, b2: vec4f, b3: vec4f) -> vec4f {
  return acc + a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3;
}

@compute @workgroup_size(WG_X, WG_Y)
fn matmul_vec4(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let M = params.M; let N = params.N; let K = params.K;
  let K4 = K / 4u; let N4 = N / 4u;
  let r0 = (wid.y * WG_Y + lid.y) * 8u;
  let c0 = (wid.x * WG_X + lid.x) * 8u;
  let abase = wid.z * params.strideA / 4u;
  let bbase = wid.z * params.strideB / 4u;
  // vec4 offsets of the (clamped) rows of A and column groups of B at k = 0.
  let pa0 = abase + min(r0, M - 1u) * K4;
  let pa1 = abase + min(r0 + 1u, M - 1u) * K4;
  let pa2 = abase + min(r0 + 2u, M - 1u) * K4;
  let pa3 = abase + min(r0 + 3u, M - 1u) * K4;
  let pa4 = abase + min(r0 + 4u, M - 1u) * K4;
  let pa5 = abase + min(r0 + 5u, M - 1u) * K4;
  let pa6 = abase + min(r0 + 6u, M - 1u) * K4;
  let pa7 = abase + min(r0 + 7u, M - 1u) * K4;
  let pbl = bbase + min(c0 / 4u, N4 - 1u);
  let pbr = bbase + min(c0 / 4u + 1u, N4 - 1u);
  var l0 = vec4f(0.0); var l1 = vec4f(0.0); var l2 = vec4f(0.0); var l3 = vec4f(0.0);
  var l4 = vec4f(0.0); var l5 = vec4f(0.0); var l6 = vec4f(0.0); var l7 = vec4f(0.0);
  var h0 = vec4f(0.0); var h1 = vec4f(0.0); var h2 = vec4f(0.0); var h3 = vec4f(0.0);
  var h4 = vec4f(0.0); var h5 = vec4f(0.0); var h6 = vec4f(0.0); var h7 = vec4f(0.0);
  for (var k4 = 0u; k4 < K4; k4++) {
    let rb = k4 * 4u * N4; // vec4 offset of row k = 4·k4 of B
    let bl0 = b[pbl + rb]; let bl1 = b[pbl + rb + N4]; let bl2 = b[pbl + rb + 2u * N4]; let bl3 = b[pbl + rb + 3u * N4];
    let bh0 = b[pbr + rb]; let bh1 = b[pbr + rb + N4]; let bh2 = b[pbr + rb + 2u * N4]; let bh3 = b[pbr + rb + 3u * N4];
    let a0 = a[pa0 + k4]; l0 = fma4(l0, a0, bl0, bl1, bl2, bl3); h0 = fma4(h0, a0, bh0, bh1, bh2, bh3);
    let a1 = a[pa1 + k4]; l1 = fma4(l1, a1, bl0, bl1, bl2, bl3); h1 = fma4(h1, a1, bh0, bh1, bh2, bh3);
    let a2 = a[pa2 + k4]; l2 = fma4(l2, a2, bl0, bl1, bl2, bl3); h2 = fma4(h2, a2, bh0, bh1, bh2, bh3);
    let a3 = a[pa3 + k4]; l3 = fma4(l3, a3, bl0, bl1, bl2, bl3); h3 = fma4(h3, a3, bh0, bh1, bh2, bh3);
    let a4 = a[pa4 + k4]; l4 = fma4(l4, a4, bl0, bl1, bl2, bl3); h4 = fma4(h4, a4, bh0, bh1, bh2, bh3);
    let a5 = a[pa5 + k4]; l5 = fma4(l5, a5, bl0, bl1, bl2, bl3); h5 = fma4(h5, a5, bh0, bh1, bh2, bh3);
    let a6 = a[pa6 + k4]; l6 = fma4(l6, a6, bl0, bl1, bl2, bl3); h6 = fma4(h6, a6, bh0, bh1, bh2, bh3);
    let a7 = a[pa7 + k4]; l7 = fma4(l7, a7, bl0, bl1, bl2, bl3); h7 = fma4(h7, a7, bh0, bh1, bh2, bh3);
  }
  let cb = wid.z * M * N;
  store_row(cb, r0, c0, l0); store_row(cb, r0 + 1u, c0, l1); store_row(cb, r0 + 2u, c0, l2); store_row(cb, r0 + 3u, c0, l3);
  store_row(cb, r0 + 4u, c0, l4); store_row(cb, r0 + 5u, c0, l5); store_row(cb, r0 + 6u, c0, l6); store_row(cb, r0 + 7u, c0, l7);
  let c1 = c0 + 4u;
  store_row(cb, r0, c1, h0); store_row(cb, r0 + 1u, c1, h1); store_row(cb, r0 + 2u, c1, h2); store_row(cb, r0 + 3u, c1, h3);
  store_row(cb, r0 + 4u, c1, h4); store_row(cb, r0 + 5u, c1, h5); store_row(cb, r0 + 6u, c1, h6); store_row(cb, r0 + 7u, c1, h7);
}

// M = 1 with b stored (N, K) — the decode step of linear(): out (B, 1, N) = a (B, 1, K) · bᵀ.
// Rows of b and the row of a are contiguous along k, so both are read as vec4 (K % 4 == 0):
// per 4 k one vec4 of a and 4 vec4 of b feed 16 multiply-adds. Each thread owns 4 outputs.
// Grid: (ceil(N / (4·WG_X)), 1, B).
@compute @workgroup_size(WG_X)
fn gemv_vec4_t(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let N = params.N; let K4 = params.K / 4u;
  let c0 = (wid.x * WG_X + lid.x) * 4u;
  let pa = wid.z * params.strideA / 4u;
  let bbase = wid.z * params.strideB / 4u;
  let pb0 = bbase + min(c0, N - 1u) * K4;
  let pb1 = bbase + min(c0 + 1u, N - 1u) * K4;
  let pb2 = bbase + min(c0 + 2u, N - 1u) * K4;
  let pb3 = bbase + min(c0 + 3u, N - 1u) * K4;
  var s = vec4f(0.0);
  for (var k4 = 0u; k4 < K4; k4++) {
    let av = a[pa + k4];
    s += vec4f(dot(av, b[pb0 + k4]), dot(av, b[pb1 + k4]), dot(av, b[pb2 + k4]), dot(av, b[pb3 + k4]));
  }
  store_gemv(wid.z * N, c0, s);
}

// Like store_row for row 0, with per-column guards (N need not be a multiple of 4 here).
fn store_gemv(o: u32, c0: u32, acc: vec4f) {
  let N = params.N;
  var v = acc * params.alpha;
  if (HAS_BIAS) {
    v += vec4f(bias[min(c0, N - 1u)], bias[min(c0 + 1u, N - 1u)], bias[min(c0 + 2u, N - 1u)], bias[min(c0 + 3u, N - 1u)]);
  }
  if (c0 < N) { out[o + c0] = v.x; }
  if (c0 + 1u < N) { out[o + c0 + 1u] = v.y; }
  if (c0 + 2u < N) { out[o + c0 + 2u] = v.z; }
  if (c0 + 3u < N) { out[o + c0 + 3u] = v.w; }
}
