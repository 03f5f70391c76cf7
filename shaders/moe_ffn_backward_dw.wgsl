// Expert FFN backward, weight side: per-expert outer-product sums over that expert's rows,
//   out[e, m, n] = Σ_{r ∈ [offsets[e], offsets[e+1])} lhs[lhsOff + r·M + m] · rhs[rhsOff + r·Nc + n]
// used three times: dw1 = daᵀ·xs, dw3 = dbᵀ·xs (M = I, Nc = C) and dw2 = dysᵀ·h (M = C, Nc = I).
// Each output element is one thread's serial sum in row order: deterministic, no atomics.
// An expert with no rows runs no loop iterations and writes its zero gradient.
//   lhs: (…, N, M) at element offset lhsOff   rhs: (…, N, Nc) at rhsOff   offsets: i32 (E + 1)
//   out: (E, M, Nc)
// Grid: x = column tiles of Nc; y = row tiles of M; z = expert.

var<workgroup> rowRange: array<u32, 2>;    // this expert's rows [lo, hi)
var<workgroup> lt: array<f32, BK * BM>;    // [kk][m] = lhs[r0 + kk, m0 + m]
var<workgroup> rt: array<f32, BK * BN>;    // [kk][n] = rhs[r0 + kk, n0 + n]

@compute @workgroup_size(WG_X, WG_Y)
fn ffn_backward_dw(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let e = wid.z;
  if (lid == 0u) {
    let lo = u32(clamp(offsets[e], 0i, i32(params.N)));
    rowRange = array<u32, 2>(lo, max(u32(clamp(offsets[e + 1u], 0i, i32(params.N))), lo));
  }
  let rows = workgroupUniformLoad(&rowRange);
  let m0 = wid.y * BM;
  let n0 = wid.x * BN;
  let tx = lid % WG_X;
  let ty = lid / WG_X;
  let M = params.M;
  let Nc = params.Nc;
  var acc: array<f32, RM * RN>;
  for (var r0 = rows[0]; r0 < rows[1]; r0 += BK) {
    for (var q = lid; q < BM * BK; q += WG_X * WG_Y) {
      let kk = q / BM; // both operands are row-major over rows: load along M / Nc
      let m = q % BM;
      var v = 0.0;
      if (r0 + kk < rows[1] && m0 + m < M) { v = lhs[params.lhsOff + (r0 + kk) * M + m0 + m]; }
      lt[kk * BM + m] = v;
    }
    for (var q = lid; q < BN * BK; q += WG_X * WG_Y) {
      let kk = q / BN;
      let n = q % BN;
      var v = 0.0;
      if (r0 + kk < rows[1] && n0 + n < Nc) { v = rhs[params.rhsOff + (r0 + kk) * Nc + n0 + n]; }
      rt[kk * BN + n] = v;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < BK; kk++) {
      for (var jj = 0u; jj < RN; jj++) {
        let b = rt[kk * BN + tx + WG_X * jj];
        for (var i = 0u; i < RM; i++) {
          acc[i * RN + jj] += lt[kk * BM + ty + WG_Y * i] * b;
        }
      }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < RM; i++) {
    let m = m0 + ty + WG_Y * i;
    for (var jj = 0u; jj < RN; jj++) {
      let n = n0 + tx + WG_X * jj;
      if (m < M && n < Nc) { out[(e * M + m) * Nc + n] = acc[i * RN + jj]; }
    }
  }
}
