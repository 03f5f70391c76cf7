// Expert FFN backward, hidden side: for each row r of expert e and hidden unit j, recompute
//   a = xs·w1[e]ᵀ, b = xs·w3[e]ᵀ (the forward's pre-activations) and dh = dys·w2[e],
// then write hg = [h; da; db] with h = silu(a)·b, da = dh·b·silu'(a), db = dh·silu(a).
// Three GEMMs share one pass over C. Tiling and schedule as moe_ffn_up.wgsl.
//   xs, dys: (N, C)   offsets: i32 (E + 1)   w1, w3: (E, I, C)   w2: (E, C, I)   hg: (3, N, I)
// Grid: x = column tiles of I; y = row tiles.

// #include "moe_schedule"

var<workgroup> xt: array<f32, BK * BM>;    // [kk][m] = xs[row0 + m, k0 + kk]
var<workgroup> dt: array<f32, BK * BM>;    // [kk][m] = dys[row0 + m, k0 + kk]
var<workgroup> at: array<f32, BK * BN>;    // [kk][n] = w1[e, n0 + n, k0 + kk]
var<workgroup> bt: array<f32, BK * BN>;    // [kk][n] = w3[e, n0 + n, k0 + kk]
var<workgroup> ct: array<f32, BK * BN>;    // [kk][n] = w2[e, k0 + kk, n0 + n]

@compute @workgroup_size(WG_X, WG_Y)
fn ffn_backward_hidden(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
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
  var acc_d: array<f32, RM * RN>;
  for (var k0 = 0u; k0 < C; k0 += BK) {
    for (var q = lid; q < BM * BK; q += WG_X * WG_Y) {
      let m = q / BK;
      let kk = q % BK;
      var vx = 0.0;
      var vd = 0.0;
      if (row0 + m < rowEnd && k0 + kk < C) {
        vx = xs[(row0 + m) * C + k0 + kk];
        vd = dys[(row0 + m) * C + k0 + kk];
      }
      xt[kk * BM + m] = vx;
      dt[kk * BM + m] = vd;
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
    for (var q = lid; q < BN * BK; q += WG_X * WG_Y) {
      let kk = q / BN; // w2 rows are C: load along I for contiguous reads
      let n = q % BN;
      var v = 0.0;
      if (n0 + n < I && k0 + kk < C) { v = w2[(e * C + k0 + kk) * I + n0 + n]; }
      ct[kk * BN + n] = v;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < BK; kk++) {
      for (var jj = 0u; jj < RN; jj++) {
        let a = at[kk * BN + tx + WG_X * jj];
        let b = bt[kk * BN + tx + WG_X * jj];
        let c = ct[kk * BN + tx + WG_X * jj];
        for (var i = 0u; i < RM; i++) {
          let x = xt[kk * BM + ty + WG_Y * i];
          acc_a[i * RN + jj] += x * a;
          acc_b[i * RN + jj] += x * b;
          acc_d[i * RN + jj] += dt[kk * BM + ty + WG_Y * i] * c;
        }
      }
    }
    workgroupBarrier();
  }
  let NI = params.N * I;
  for (var i = 0u; i < RM; i++) {
    let r = row0 + ty + WG_Y * i;
    for (var jj = 0u; jj < RN; jj++) {
      let j = n0 + tx + WG_X * jj;
      if (r < rowEnd && j < I) {
        let a = acc_a[i * RN + jj];
        let b = acc_b[i * RN + jj];
        let dh = acc_d[i * RN + jj];
        let sg = 1.0 / (1.0 + exp(-a));
        hg[r * I + j] = a * sg * b;
        hg[NI + r * I + j] = dh * b * sg * (1.0 + a * (1.0 - sg));
        hg[2u * NI + r * I + j] = dh * a * sg;
      }
    }
  }
}
