// Matrix multiply C = alpha · op(A)·op(B) + bias, batched over workgroup z.
// Bindings, `params` and the variant constants are generated from the declarations in
// web/src/gpu/ops/matmul.ts (the variant builder there decides WG_X/WG_Y, TM, TN, TK, HAS_BIAS).
//
//   a:    (B, M, K) or (B, K, M) when transposed; row m, column k at a[batch·strideA + m·amS + k·akS]
//   b:    (B, K, N) or (B, N, K);                 row k, column n at b[batch·strideB + k·bkS + n·bnS]
//   bias: (N), read only when HAS_BIAS (otherwise bound to any read buffer)
//   out:  (B, M, N) contiguous
// Transposition is carried by the strides (amS/akS, bkS/bnS), so every trans combination runs
// the same code. Each thread owns a TM×TN block of C (regs: TM 4 or 8, TN 4 or 8; tiled: 4×4;
// gemv: 1×4): one vec4 accumulator per row and group of 4 adjacent columns. Accumulators are separate named vec4s (not an array): Tint emits no
// unroll hints, and a dynamically indexed array would live in memory on software adapters.
// Loads use clamped indices (rows/columns past the edge re-read the last valid one) so the
// inner loops carry no bounds checks; only the stores are guarded.

fn store_row(cbase: u32, r: u32, c0: u32, acc: vec4f) {
  if (r >= params.M) { return; }
  let o = cbase + r * params.N;
  var v = acc * params.alpha;
  if (HAS_BIAS) {
    v += vec4f(bias[min(c0, params.N - 1u)], bias[min(c0 + 1u, params.N - 1u)],
               bias[min(c0 + 2u, params.N - 1u)], bias[min(c0 + 3u, params.N - 1u)]);
  }
  if (c0 + 3u < params.N) {
    out[o + c0] = v.x; out[o + c0 + 1u] = v.y; out[o + c0 + 2u] = v.z; out[o + c0 + 3u] = v.w;
  } else {
    if (c0 < params.N) { out[o + c0] = v.x; }
    if (c0 + 1u < params.N) { out[o + c0 + 1u] = v.y; }
    if (c0 + 2u < params.N) { out[o + c0 + 2u] = v.z; }
  }
}

fn store_block(cbase: u32, r0: u32, c0: u32, acc0: vec4f, acc1: vec4f, acc2: vec4f, acc3: vec4f) {
  store_row(cbase, r0, c0, acc0);
  if (TM > 1u) { store_row(cbase, r0 + 1u, c0, acc1); }
  if (TM > 2u) { store_row(cbase, r0 + 2u, c0, acc2); store_row(cbase, r0 + 3u, c0, acc3); }
}

// Register-blocked, no workgroup memory: each thread streams its TM rows of A and TN columns
// of B straight from the storage buffers. On CPU-backed adapters (SwiftShader) caches do the
// tiling, barriers are expensive and every load is a per-lane gather, so this is the fast path
// there, with the largest block (8×8: 16 loads per 64 multiply-adds; measured in BENCHMARKS.md).
// Grid: (ceil(N / (TN·WG_X)), ceil(M / (TM·WG_Y)), B).
@compute @workgroup_size(WG_X, WG_Y)
fn matmul_regs(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let M = params.M; let N = params.N; let K = params.K;
  let r0 = (wid.y * WG_Y + lid.y) * TM;
  let c0 = (wid.x * WG_X + lid.x) * TN;
  let abase = wid.z * params.strideA;
  let bbase = wid.z * params.strideB;
  // Element offsets of the (clamped) rows of A and columns of B at k = 0.
  let amS = params.amS;
  var pa0 = abase + min(r0, M - 1u) * amS;
  var pa1 = abase + min(r0 + 1u, M - 1u) * amS;
  var pa2 = abase + min(r0 + 2u, M - 1u) * amS;
  var pa3 = abase + min(r0 + 3u, M - 1u) * amS;
  var pa4 = abase + min(r0 + 4u, M - 1u) * amS;
  var pa5 = abase + min(r0 + 5u, M - 1u) * amS;
  var pa6 = abase + min(r0 + 6u, M - 1u) * amS;
  var pa7 = abase + min(r0 + 7u, M - 1u) * amS;
  var pb0 = bbase + min(c0, N - 1u) * params.bnS;
  var pb1 = bbase + min(c0 + 1u, N - 1u) * params.bnS;
  var pb2 = bbase + min(c0 + 2u, N - 1u) * params.bnS;
  var pb3 = bbase + min(c0 + 3u, N - 1u) * params.bnS;
  var pb4 = bbase + min(c0 + 4u, N - 1u) * params.bnS;
  var pb5 = bbase + min(c0 + 5u, N - 1u) * params.bnS;
  var pb6 = bbase + min(c0 + 6u, N - 1u) * params.bnS;
  var pb7 = bbase + min(c0 + 7u, N - 1u) * params.bnS;
  let akS = params.akS; let bkS = params.bkS;
  var acc0 = vec4f(0.0); var acc1 = vec4f(0.0); var acc2 = vec4f(0.0); var acc3 = vec4f(0.0);
  var dcc0 = vec4f(0.0); var dcc1 = vec4f(0.0); var dcc2 = vec4f(0.0); var dcc3 = vec4f(0.0);
  var dcc4 = vec4f(0.0); var dcc5 = vec4f(0.0); var dcc6 = vec4f(0.0); var dcc7 = vec4f(0.0);
  var acc4 = vec4f(0.0); var acc5 = vec4f(0.0); var acc6 = vec4f(0.0); var acc7 = vec4f(0.0);
  for (var k = 0u; k < K; k++) {
    let bv = vec4f(b[pb0], b[pb1], b[pb2], b[pb3]);
    pb0 += bkS; pb1 += bkS; pb2 += bkS; pb3 += bkS;
    var bw = vec4f(0.0);
    if (TN > 4u) { bw = vec4f(b[pb4], b[pb5], b[pb6], b[pb7]); pb4 += bkS; pb5 += bkS; pb6 += bkS; pb7 += bkS; }
    let x0 = a[pa0]; pa0 += akS;
    acc0 += x0 * bv;
    if (TN > 4u) { dcc0 += x0 * bw; }
    if (TM > 1u) {
      let x1 = a[pa1]; pa1 += akS;
      acc1 += x1 * bv;
      if (TN > 4u) { dcc1 += x1 * bw; }
    }
    if (TM > 2u) {
      let x2 = a[pa2]; let x3 = a[pa3]; pa2 += akS; pa3 += akS;
      acc2 += x2 * bv; acc3 += x3 * bv;
      if (TN > 4u) { dcc2 += x2 * bw; dcc3 += x3 * bw; }
    }
    if (TM > 4u) {
      let x4 = a[pa4]; let x5 = a[pa5]; let x6 = a[pa6]; let x7 = a[pa7];
      pa4 += akS; pa5 += akS; pa6 += akS; pa7 += akS;
      acc4 += x4 * bv; acc5 += x5 * bv; acc6 += x6 * bv; acc7 += x7 * bv;
      if (TN > 4u) { dcc4 += x4 * bw; dcc5 += x5 * bw; dcc6 += x6 * bw; dcc7 += x7 * bw; }
    }
  }
  let cbase = wid.z * M * N;
  store_block(cbase, r0, c0, acc0, acc1, acc2, acc3);
  if (TM > 4u) { store_block(cbase, r0 + 4u, c0, acc4, acc5, acc6, acc7); }
  if (TN > 4u) {
    store_block(cbase, r0, c0 + 4u, dcc0, dcc1, dcc2, dcc3);
    if (TM > 4u) { store_block(cbase, r0 + 4u, c0 + 4u, dcc4, dcc5, dcc6, dcc7); }
  }
}

// Workgroup-tiled: the workgroup stages a (BM × TK) panel of A and a (TK × BN) panel of B in
// workgroup memory (BM = TM·WG_Y, BN = 4·WG_X), then each thread accumulates its TM×4 block
// from the panels. Out-of-range elements of the panels are zero, so K need not divide TK.
// Grid: (ceil(N / BN), ceil(M / BM), B).
const BM: u32 = TM * WG_Y;
const BN: u32 = 4u * WG_X;
const THREADS: u32 = WG_X * WG_Y;
var<workgroup> As: array<f32, TK * BM>;  // (TK, BM): k-major so a thread's TM rows are adjacent
var<workgroup> Bs: array<vec4f, TK * WG_X>;  // (TK, BN/4): one vec4 per thread column block

@compute @workgroup_size(WG_X, WG_Y)
fn matmul_tiled(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u,
                @builtin(local_invocation_index) li: u32) {
  let M = params.M; let N = params.N; let K = params.K;
  let rowBase = wid.y * BM;
  let colBase = wid.x * BN;
  let abase = wid.z * params.strideA;
  let bbase = wid.z * params.strideB;
  var acc0 = vec4f(0.0); var acc1 = vec4f(0.0); var acc2 = vec4f(0.0); var acc3 = vec4f(0.0);
  for (var k0 = 0u; k0 < K; k0 += TK) {
    // Stage A: TK·BM elements, THREADS at a time.
    for (var i = li; i < TK * BM; i += THREADS) {
      let kk = i / BM; let rr = i % BM;
      let r = rowBase + rr; let k = k0 + kk;
      var v = 0.0;
      if (r < M && k < K) { v = a[abase + r * params.amS + k * params.akS]; }
      As[i] = v;
    }
    // Stage B: TK·WG_X vec4s.
    for (var i = li; i < TK * WG_X; i += THREADS) {
      let kk = i / WG_X; let cc = (i % WG_X) * 4u;
      let k = k0 + kk; let c = colBase + cc;
      var v = vec4f(0.0);
      if (k < K) {
        let p = bbase + k * params.bkS;
        let bnS = params.bnS;
        if (c < N) { v.x = b[p + c * bnS]; }
        if (c + 1u < N) { v.y = b[p + (c + 1u) * bnS]; }
        if (c + 2u < N) { v.z = b[p + (c + 2u) * bnS]; }
        if (c + 3u < N) { v.w = b[p + (c + 3u) * bnS]; }
      }
      Bs[i] = v;
    }
    workgroupBarrier();
    let ar = lid.y * TM;
    for (var kk = 0u; kk < TK; kk++) {
      let bv = Bs[kk * WG_X + lid.x];
      let ap = kk * BM + ar;
      acc0 += As[ap] * bv;
      if (TM > 1u) { acc1 += As[ap + 1u] * bv; }
      if (TM > 2u) { acc2 += As[ap + 2u] * bv; acc3 += As[ap + 3u] * bv; }
    }
    workgroupBarrier();
  }
  store_block(wid.z * M * N, rowBase + lid.y * TM, colBase + lid.x * 4u, acc0, acc1, acc2, acc3);
}

// M = 1 (decode): out (B, 1, N). Each thread owns 4 adjacent outputs and walks K with four
// independent partial sums per output (k, k+1, k+2, k+3) for instruction-level parallelism.
// Grid: (ceil(N / (4·WG_X)), 1, B).
@compute @workgroup_size(WG_X)
fn gemv(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let N = params.N; let K = params.K;
  let c0 = (wid.x * WG_X + lid.x) * 4u;
  let abase = wid.z * params.strideA;
  let bbase = wid.z * params.strideB;
  let akS = params.akS; let bkS = params.bkS;
  let pb0 = bbase + min(c0, N - 1u) * params.bnS;
  let pb1 = bbase + min(c0 + 1u, N - 1u) * params.bnS;
  let pb2 = bbase + min(c0 + 2u, N - 1u) * params.bnS;
  let pb3 = bbase + min(c0 + 3u, N - 1u) * params.bnS;
  var s0 = vec4f(0.0); var s1 = vec4f(0.0); var s2 = vec4f(0.0); var s3 = vec4f(0.0);
  let K4 = K & ~3u;
  var k = 0u;
  for (; k < K4; k += 4u) {
    let o0 = k * bkS; let o1 = o0 + bkS; let o2 = o1 + bkS; let o3 = o2 + bkS;
    let pa = abase + k * akS;
    s0 += a[pa] * vec4f(b[pb0 + o0], b[pb1 + o0], b[pb2 + o0], b[pb3 + o0]);
    s1 += a[pa + akS] * vec4f(b[pb0 + o1], b[pb1 + o1], b[pb2 + o1], b[pb3 + o1]);
    s2 += a[pa + 2u * akS] * vec4f(b[pb0 + o2], b[pb1 + o2], b[pb2 + o2], b[pb3 + o2]);
    s3 += a[pa + 3u * akS] * vec4f(b[pb0 + o3], b[pb1 + o3], b[pb2 + o3], b[pb3 + o3]);
  }
  for (; k < K; k++) {
    let o = k * bkS;
    s0 += a[abase + k * akS] * vec4f(b[pb0 + o], b[pb1 + o], b[pb2 + o], b[pb3 + o]);
  }
  store_row(wid.z * N, 0u, c0, (s0 + s1) + (s2 + s3));
}
