// Expert FFN, first half: h = silu(xs·w1[e]ᵀ) ⊙ (xs·w3[e]ᵀ) for each row's expert e (grouped GEMM
// with the SwiGLU fused into the epilogue). Bindings, `params`, WG_X/WG_Y and the tile constants
// BM, BN, BK (tile rows, columns, depth) and RM, RN (outputs per thread) come from the variant
// builder in web/src/gpu/ops/moe.ts.
//   xs: (N, C)   offsets: i32 (E + 1)   w1, w3: (E, I, C)   h: (N, I)
// Grid: x = column tiles of I; y = row tiles. Each expert's rows [offsets[e], offsets[e+1]) are
// cut into BM-row tiles, numbered in expert order; the workgroup finds its (expert, rows) from
// the offsets on the GPU (no read-back; `schedule` in shaders/lib/moe_schedule.wgsl). Experts
// with no rows have no tiles; workgroups past the last tile exit at once.

// #include "moe_schedule"

var<workgroup> xt: array<f32, BK * BM>;    // [kk][m] = xs[row0 + m, k0 + kk]
var<workgroup> at: array<f32, BK * BN>;    // [kk][n] = w1[e, n0 + n, k0 + kk]
var<workgroup> bt: array<f32, BK * BN>;    // [kk][n] = w3[e, n0 + n, k0 + kk]

@compute @workgroup_size(WG_X, WG_Y)
fn ffn_up(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let s = schedule(wid.y, lid);
  if (s[3] == 0u) { return; }
  let e = s[0];
  let row0 = s[1];
  let rowEnd = s[2];
  let n0 = wid.x * BN;
  let tx = lid % WG_X;
  let ty = lid / WG_X;
  let C = params.C;
  let I = params.I;
  var acc_a: array<f32, RM * RN>;
  var acc_b: array<f32, RM * RN>;
  for (var k0 = 0u; k0 < C; k0 += BK) {
    for (var q = lid; q < BM * BK; q += WG_X * WG_Y) {
      let m = q / BK;
      let kk = q % BK;
      var v = 0.0;
      if (row0 + m < rowEnd && k0 + kk < C) { v = xs[(row0 + m) * C + k0 + kk]; }
      xt[kk * BM + m] = v;
    }
    for (var q = lid; q < BN * BK; q += WG_X * WG_Y) {
      let n = q / BK;
      let kk = q % BK;
      var va = 0.0;
      var vb = 0.0;
      if (n0 + n < I && k0 + kk < C) {
        let w = (e * I + n0 + n) * C + k0 + kk;
        va = w1[w];
        vb = w3[w];
      }
      at[kk * BN + n] = va;
      bt[kk * BN + n] = vb;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < BK; kk++) {
      for (var jj = 0u; jj < RN; jj++) {
        let a = at[kk * BN + tx + WG_X * jj];
        let b = bt[kk * BN + tx + WG_X * jj];
        for (var i = 0u; i < RM; i++) {
          let x = xt[kk * BM + ty + WG_Y * i];
          acc_a[i * RN + jj] += x * a;
          acc_b[i * RN + jj] += x * b;
        }
      }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < RM; i++) {
    let r = row0 + ty + WG_Y * i;
    for (var jj = 0u; jj < RN; jj++) {
      let j = n0 + tx + WG_X * jj;
      if (r < rowEnd && j < I) {
        let a = acc_a[i * RN + jj];
        h[r * I + j] = a / (1.0 + exp(-a)) * acc_b[i * RN + jj];
      }
    }
  }
}
