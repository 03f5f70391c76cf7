// Expert FFN backward, input side: dxs = da·w1[e] + db·w3[e] for each row's expert e, with
// da, db from moe_ffn_backward_hidden.wgsl. Tiling and schedule as moe_ffn_up.wgsl.
//   hg: (3, N, I) = [h; da; db]   offsets: i32 (E + 1)   w1, w3: (E, I, C)   dxs: (N, C)
// Grid: x = column tiles of C; y = row tiles.

// #include "moe_schedule"

var<workgroup> dat: array<f32, BK * BM>;   // [kk][m] = da[row0 + m, k0 + kk]
var<workgroup> dbt: array<f32, BK * BM>;   // [kk][m] = db[row0 + m, k0 + kk]
var<workgroup> at: array<f32, BK * BN>;    // [kk][n] = w1[e, k0 + kk, n0 + n]
var<workgroup> bt: array<f32, BK * BN>;    // [kk][n] = w3[e, k0 + kk, n0 + n]

@compute @workgroup_size(WG_X, WG_Y)
fn ffn_backward_dx(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
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
  let NI = params.N * I;
  var acc: array<f32, RM * RN>;
  for (var k0 = 0u; k0 < I; k0 += BK) {
    for (var q = lid; q < BM * BK; q += WG_X * WG_Y) {
      let m = q / BK;
      let kk = q % BK;
      var va = 0.0;
      var vb = 0.0;
      if (row0 + m < rowEnd && k0 + kk < I) {
        va = hg[NI + (row0 + m) * I + k0 + kk];
        vb = hg[2u * NI + (row0 + m) * I + k0 + kk];
      }
      dat[kk * BM + m] = va;
      dbt[kk * BM + m] = vb;
    }
    for (var q = lid; q < BN * BK; q += WG_X * WG_Y) {
      let kk = q / BN; // weight rows are I: load along C for contiguous reads
      let n = q % BN;
      var va = 0.0;
      var vb = 0.0;
      if (n0 + n < C && k0 + kk < I) {
        let w = (e * I + k0 + kk) * C + n0 + n;
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
          acc[i * RN + jj] += dat[kk * BM + ty + WG_Y * i] * a + dbt[kk * BM + ty + WG_Y * i] * b;
        }
      }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < RM; i++) {
    let r = row0 + ty + WG_Y * i;
    for (var jj = 0u; jj < RN; jj++) {
      let c = n0 + tx + WG_X * jj;
      if (r < rowEnd && c < C) { dxs[r * C + c] = acc[i * RN + jj]; }
    }
  }
}
