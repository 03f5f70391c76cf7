// Expert FFN, second half: ys = h·w2[e]ᵀ for each row's expert e (grouped GEMM). Tiling and
// the GPU-side tile schedule are those of moe_ffn_up.wgsl.
//   h: (N, I)   offsets: i32 (E + 1)   w2: (E, C, I)   ys: (N, C)
// Grid: x = column tiles of C; y = row tiles (see moe_ffn_up.wgsl).

// #include "moe_schedule"

var<workgroup> ht: array<f32, BK * BM>;    // [kk][m] = h[row0 + m, k0 + kk]
var<workgroup> wt: array<f32, BK * BN>;    // [kk][n] = w2[e, n0 + n, k0 + kk]

@compute @workgroup_size(WG_X, WG_Y)
fn ffn_down(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
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
  var acc: array<f32, RM * RN>;
  for (var k0 = 0u; k0 < I; k0 += BK) {
    for (var q = lid; q < BM * BK; q += WG_X * WG_Y) {
      let m = q / BK;
      let kk = q % BK;
      var v = 0.0;
      if (row0 + m < rowEnd && k0 + kk < I) { v = h[(row0 + m) * I + k0 + kk]; }
      ht[kk * BM + m] = v;
    }
    for (var q = lid; q < BN * BK; q += WG_X * WG_Y) {
      let n = q / BK;
      let kk = q % BK;
      var v = 0.0;
      if (n0 + n < C && k0 + kk < I) { v = w2[(e * C + n0 + n) * I + k0 + kk]; }
      wt[kk * BN + n] = v;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < BK; kk++) {
      for (var jj = 0u; jj < RN; jj++) {
        let w = wt[kk * BN + tx + WG_X * jj];
        for (var i = 0u; i < RM; i++) {
          acc[i * RN + jj] += ht[kk * BM + ty + WG_Y * i] * w;
        }
      }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < RM; i++) {
    let r = row0 + ty + WG_Y * i;
    for (var jj = 0u; jj < RN; jj++) {
      let c = n0 + tx + WG_X * jj;
      if (r < rowEnd && c < C) { ys[r * C + c] = acc[i * RN + jj]; }
    }
  }
}
