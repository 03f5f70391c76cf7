// out (M, N) = x (M, K) · dequant(w)ᵀ + bias, with w (N, K) kept in its file encoding (f32, f16,
// bf16, q8_0, q4_0, q4_k, q5_k, q6_k; WTYPE and UNIT from the variant) and read as packed words
// straight from the u32 buffer; f32 accumulation. Bindings and `params` come from the
// declarations in web/src/gpu/ops/matmul-quant.ts; the CPU twin is web/src/gpu/cpu/matmul-quant.ts.
//   x: (M, K) f32   xv: the same x as vec4s (K % 4 = 0)   w: (N, K) weight bytes as u32 words   bias: (N) f32, read when HAS_BIAS
//   out: (M, ldo) f32, columns [n0, n0 + N) written: w may be one row part of a split weight
//   params.units: units of UNIT values per row (K / UNIT, or ceil(K / 4))
// Four entry points:
//   gemv:  decode (M ≤ MR ≤ 8) on GPUs. One workgroup per output column n; its threads split the
//          row's units, each decoding a unit once for all M rows, then a tree reduction. Grid: N
//          workgroups, folded into (x, y) past 65535.
//   gemv_cols: decode (M ≤ MR ≤ 8) on software adapters. Each thread owns COLS adjacent output
//          columns and walks their whole rows, decoding each unit once for all M rows: no
//          barriers and no workgroup memory, which a software rasterizer (SwiftShader) runs as
//          CPU work per thread. Grid: ceil(N / (WG_X · COLS)) workgroups, folded past 65535.
//   tiled: prefill (M > 8). A TM × TN output tile per workgroup of (TN/4) × (TM/4) threads, 4 × 4
//          outputs each: per 32-deep step the workgroup dequantizes the TN × 32 weight tile into
//          workgroup memory once and reuses it for all TM rows. Tiles hold T (f16 in the
//          shader-f16 variant, halving workgroup memory traffic); products and sums stay f32.
//          Grid: (ceil(N / TN), ceil(M / TM)).
//   dequant: out (N, K) f32 = dequant(w), one thread per 4 values (units of 4 values; M unused).

// #include "weight_decode_vec4"

// Row r of x, values k..k+3 (zeros past K: the f16/bf16/f32 tail).
fn x4(r: u32, k: u32) -> vec4f {
  let K = params.K;
  let p = r * K + k;
  if (k + 3u < K) { return vec4f(x[p], x[p + 1u], x[p + 2u], x[p + 3u]); }
  var v = vec4f(0.0);
  for (var i = 0u; i < 4u; i++) { if (k + i < K) { v[i] = x[p + i]; } }
  return v;
}

// x4 with one 16-byte load where rows are whole vec4s (every block dtype: K % 32 = 0).
fn x4v(r: u32, k: u32) -> vec4f {
  if ((params.K & 3u) == 0u) { return xv[(r * params.K + k) >> 2u]; }
  return x4(r, k);
}

// out[m, n0 + n] = v + bias[n0 + n]
fn store(m: u32, n: u32, v: f32) {
  let c = params.n0 + n;
  if (HAS_BIAS) { out[m * params.ldo + c] = v + bias[c]; } else { out[m * params.ldo + c] = v; }
}

var<workgroup> red: array<f32, WG_X * MR>; // gemv: (MR, WG_X) partial sums

@compute @workgroup_size(WG_X)
fn gemv(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let n = wid.x + wid.y * nwg.x; // uniform over the workgroup: returning keeps barriers uniform
  if (n >= params.N) { return; }
  var acc: array<f32, MR>;
  for (var u = lid; u < params.units; u += WG_X) {
    let ab = w_unit_ab(n, params.K, u); // the unit's scales, once for its 32 values and all rows
    for (var j = 0u; j < UNIT / 4u; j++) {
      let q = w_unit_q4(n, params.K, u, j);
      let s = w_scale_j(ab, j);
      let k = u * UNIT + 4u * j;
      for (var r = 0u; r < MR; r++) {
        let xv = x4(min(r, params.M - 1u), k);
        acc[r] += s.x * dot(q, xv) - s.y * dot(xv, vec4f(1.0)); // Σ x·(a·q − b)
      }
    }
  }
  for (var r = 0u; r < MR; r++) { red[r * WG_X + lid] = acc[r]; }
  workgroupBarrier();
  for (var s = WG_X / 2u; s > 0u; s = s >> 1u) {
    if (lid < s) {
      for (var r = 0u; r < MR; r++) { red[r * WG_X + lid] += red[r * WG_X + lid + s]; }
    }
    workgroupBarrier();
  }
  if (lid < params.M && lid < MR) { store(lid, n, red[lid * WG_X]); }
}

@compute @workgroup_size(WG_X)
fn gemv_cols(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let n0 = (gid.x + gid.y * nwg.x * WG_X) * COLS; // first of this thread's columns
  if (n0 >= params.N) { return; }
  let last = params.N - 1u; // columns past N decode row N − 1 again and are not stored
  var acc: array<array<f32, MR>, COLS>;
  for (var u = 0u; u < params.units; u++) {
    var ab: array<vec2f, COLS>;
    for (var c = 0u; c < COLS; c++) { ab[c] = w_unit_ab(min(n0 + c, last), params.K, u); }
    for (var j = 0u; j < UNIT / 4u; j++) {
      let k = u * UNIT + 4u * j;
      var xs: array<vec4f, MR>; // x of all rows, loaded once for the COLS columns
      var xsum: array<f32, MR>;
      for (var r = 0u; r < MR; r++) {
        xs[r] = x4v(min(r, params.M - 1u), k);
        xsum[r] = dot(xs[r], vec4f(1.0));
      }
      for (var c = 0u; c < COLS; c++) {
        let q = w_unit_q4(min(n0 + c, last), params.K, u, j);
        let s = w_scale_j(ab[c], j);
        for (var r = 0u; r < MR; r++) { acc[c][r] += s.x * dot(q, xs[r]) - s.y * xsum[r]; } // Σ x·(a·q − b)
      }
    }
  }
  for (var c = 0u; c < COLS; c++) {
    if (n0 + c >= params.N) { break; }
    for (var r = 0u; r < MR; r++) { if (r < params.M) { store(r, n0 + c, acc[c][r]); } }
  }
}

const KT: u32 = 32u; // depth of a tile step, in values
var<workgroup> wt: array<T, TN * KT>; // (TN, KT) dequantized weights
var<workgroup> xt: array<T, TM * KT>; // (TM, KT) rows of x

@compute @workgroup_size(WG_X, WG_Y)
fn tiled(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32, @builtin(local_invocation_id) tid: vec3u) {
  let M = params.M; let N = params.N; let K = params.K;
  let n0 = wid.x * TN; let m0 = wid.y * TM;
  let threads = WG_X * WG_Y;
  var acc: array<vec4f, 4>; // rows tid.y·4 + a, columns tid.x·4 + 0..3
  let steps = (K + KT - 1u) / KT;
  for (var st = 0u; st < steps; st++) {
    let kb = st * KT;
    for (var i = lid; i < TN * (KT / 4u); i += threads) { // TN rows × 8 words of quants
      let rr = i / (KT / 4u);
      let k = kb + 4u * (i % (KT / 4u));
      let wv = w_unit4(min(n0 + rr, N - 1u), K, k / UNIT, (k % UNIT) / 4u);
      for (var c = 0u; c < 4u; c++) { wt[rr * KT + k - kb + c] = T(wv[c]); }
    }
    for (var i = lid; i < TM * (KT / 4u); i += threads) {
      let rr = i / (KT / 4u);
      let k = kb + 4u * (i % (KT / 4u));
      let xv = x4(min(m0 + rr, M - 1u), k);
      for (var c = 0u; c < 4u; c++) { xt[rr * KT + k - kb + c] = T(xv[c]); }
    }
    workgroupBarrier();
    for (var kk = 0u; kk < KT; kk++) {
      let wv = vec4f(f32(wt[(tid.x * 4u) * KT + kk]), f32(wt[(tid.x * 4u + 1u) * KT + kk]),
                     f32(wt[(tid.x * 4u + 2u) * KT + kk]), f32(wt[(tid.x * 4u + 3u) * KT + kk]));
      for (var a = 0u; a < 4u; a++) { acc[a] += f32(xt[(tid.y * 4u + a) * KT + kk]) * wv; }
    }
    workgroupBarrier();
  }
  for (var a = 0u; a < 4u; a++) {
    let m = m0 + tid.y * 4u + a;
    for (var b = 0u; b < 4u; b++) {
      let n = n0 + tid.x * 4u + b;
      if (m < M && n < N) { store(m, n, acc[a][b]); }
    }
  }
}

@compute @workgroup_size(WG_X)
fn dequant(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG_X; // (row, group of 4 values)
  let per_row = (params.K + 3u) / 4u;
  if (i >= params.N * per_row) { return; }
  let n = i / per_row;
  let k = 4u * (i % per_row);
  let v = w_unit4(n, params.K, k / UNIT, (k % UNIT) / 4u);
  for (var c = 0u; c < 4u; c++) { if (k + c < params.K) { out[n * params.K + k + c] = v[c]; } }
}
