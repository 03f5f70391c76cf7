// Grouped expert GEMM on weights kept in their file encoding (issue #10): out = x·w[e]ᵀ for each
// row's expert e, w decoded element by element by shaders/lib/weight_decode.wgsl (WTYPE from the
// variant: f32, f16, bf16 or a GGUF block type). The MoE expert FFN on quantized (or split)
// experts is three of these (gate, up, down) with the SwiGLU between them
// (web/src/gpu/ops/moe.ts). Bindings, `params`, WG_X/WG_Y and the tile constants BM, BN, BK, RM,
// RN come from the variant builder there; the tiling and the GPU-side tile schedule are those of
// moe_ffn_up.wgsl.
//   x: (N, K) f32   offsets: i32 (E + 1), the experts in w   w: (E, Nout, K) as u32 words
//   out: (N, Nout) f32, written for the rows of the experts in w only
// Grid: x = column tiles of Nout; y = row tiles.

// #include "moe_schedule"
// #include "weight_decode"

var<workgroup> xt: array<f32, BK * BM>;    // [kk][m] = x[row0 + m, k0 + kk]
var<workgroup> wt: array<f32, BK * BN>;    // [kk][n] = w[e, n0 + n, k0 + kk], decoded

@compute @workgroup_size(WG_X, WG_Y)
fn ffn_quant(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let s = schedule(wid.y, lid);
  if (s[3] == 0u) { return; }
  let e = s[0];
  let row0 = s[1];
  let rowEnd = s[2];
  let n0 = wid.x * BN;
  let tx = lid % WG_X;
  let ty = lid / WG_X;
  let K = params.K;
  let Nout = params.Nout;
  var acc: array<f32, RM * RN>;
  for (var k0 = 0u; k0 < K; k0 += BK) {
    for (var q = lid; q < BM * BK; q += WG_X * WG_Y) {
      let m = q / BK;
      let kk = q % BK;
      var v = 0.0;
      if (row0 + m < rowEnd && k0 + kk < K) { v = x[(row0 + m) * K + k0 + kk]; }
      xt[kk * BM + m] = v;
    }
    for (var q = lid; q < BN * BK; q += WG_X * WG_Y) {
      let n = q / BK;
      let kk = q % BK;
      var v = 0.0;
      if (n0 + n < Nout && k0 + kk < K) { v = w_at(e * Nout + n0 + n, K, k0 + kk); }
      wt[kk * BN + n] = v;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < BK; kk++) {
      for (var jj = 0u; jj < RN; jj++) {
        let wv = wt[kk * BN + tx + WG_X * jj];
        for (var i = 0u; i < RM; i++) {
          acc[i * RN + jj] += xt[kk * BM + ty + WG_Y * i] * wv;
        }
      }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < RM; i++) {
    let r = row0 + ty + WG_Y * i;
    for (var jj = 0u; jj < RN; jj++) {
      let c = n0 + tx + WG_X * jj;
      if (r < rowEnd && c < Nout) { out[r * Nout + c] = acc[i * RN + jj]; }
    }
  }
}
