// Grouped expert GEMM on weights kept in their file encoding (issue #10): out = x·w[e]ᵀ for each
// row's expert e, w decoded four values at a time by shaders/lib/weight_decode_vec4.wgsl (WTYPE
// and UNIT from the variant: f32, f16, bf16 or a GGUF block type). The MoE expert FFN on quantized (or split)
// experts is three of these (gate, up, down) with the SwiGLU between them
// (web/src/gpu/ops/moe.ts). Bindings, `params`, WG_X/WG_Y and the tile constants BM, BN, BK, RM,
// RN come from the variant builder there; the tiling and the GPU-side tile schedule are those of
// moe_ffn_up.wgsl.
//   x: (N, K) f32   offsets: i32 (E + 1), the experts in w   w: (E, Nout, K) as u32 words
//   out: (N, Nout) f32, written for the rows of the experts in w only
// Grid: x = column tiles of Nout; y = row tiles. Software adapters with few rows use
// ffn_quant_rows below instead.

// #include "moe_schedule"
// #include "weight_decode_vec4"

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
    // Four consecutive values of one weight row per step: one unit's scales, one word of quants.
    for (var q = lid; q < BN * (BK / 4u); q += WG_X * WG_Y) {
      let n = q / (BK / 4u);
      let kk = (q % (BK / 4u)) * 4u;
      let k = k0 + kk;
      var v = vec4f(0.0);
      if (n0 + n < Nout && k < K) { v = w_unit4(e * Nout + n0 + n, K, k / UNIT, (k % UNIT) / 4u); } // past K: 0
      wt[kk * BN + n] = v.x;
      wt[(kk + 1u) * BN + n] = v.y;
      wt[(kk + 2u) * BN + n] = v.z;
      wt[(kk + 3u) * BN + n] = v.w;
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

// Software adapters with few rows (decode): one thread per output (r, n) walks its weight row four
// values at a time; no workgroup memory and no barriers, which cost SwiftShader far more than the
// repeated decoding (see attention_rows.wgsl). Row r belongs to the expert whose clamped range
// [offsets[e], offsets[e+1]) holds it, as in the tile schedule; rows of no expert are not written.
// Grid (flattened): ⌈N·Nout / WG_X⌉ workgroups.
@compute @workgroup_size(WG_X)
fn ffn_quant_rows(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let idx = gid.x + gid.y * nwg.x * WG_X;
  let Nout = params.Nout;
  if (idx >= params.N * Nout) { return; }
  let r = idx / Nout;
  let n = idx % Nout;
  var e = params.E;
  for (var i = 0u; i < params.E; i++) {
    let lo = u32(clamp(offsets[i], 0i, i32(params.N)));
    let hi = u32(clamp(offsets[i + 1u], 0i, i32(params.N)));
    if (r >= lo && r < hi) { e = i; break; }
  }
  if (e == params.E) { return; }
  let K = params.K;
  let row = e * Nout + n;
  let xb = r * K;
  var acc = 0.0f;
  for (var k = 0u; k < K; k += 4u) {
    let wv = w_unit4(row, K, k / UNIT, (k % UNIT) / 4u); // past K: 0
    var xv = vec4f(0.0);
    for (var i = 0u; i < 4u; i++) {
      if (k + i < K) { xv[i] = x[xb + k + i]; }
    }
    acc += dot(xv, wv);
  }
  out[r * Nout + n] = acc;
}
