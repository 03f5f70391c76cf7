// Attention backward, pass 1 of 2 (flash-attention-2): dq, and delta = rowsum(dout ⊙ out) that
// pass 2 (attention_bwd_dkdv.wgsl) reads. Each workgroup owns a block of query rows, so every
// dq element has one writer: no atomics, a fixed summation order.
//   q, dout, out, dq: (T, Hq, D)    k, v: (S, Hkv, D)    lse, delta: (Hq, T)
// With P = exp(scale·q·k − lse) and dP = dout·v:  dS = P ⊙ (dP − delta),  dq = scale · dS·K.
// Tiling is the forward prefill's (shaders/attention.wgsl): LANES threads per query row, lane l
// owning dims d = l + LANES·c (c < DPT), DP the padded row, RS = DP + 1 its stride, BQ rows per workgroup, BK keys
// per tile. Grid: (⌈T·G / BQ⌉, Hkv), query rows ρ = t·G + g of kv head kvh.

var<workgroup> q_s: array<f32, BQ * RS>; //  (BQ, RS) query rows
var<workgroup> do_s: array<f32, BQ * RS>; // (BQ, RS) their output gradients
var<workgroup> ds_s: array<f32, BQ * BK>; // (BQ, BK) dS of the tile

// #include "attention_causal"
// #include "attention_kv_tile"

@compute @workgroup_size(WG_X)
fn attn_bwd_dq(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3u) {
  let G = params.G;
  let kvh = wid.y;
  let rows = params.T * G;
  let row0 = wid.x * BQ;
  let r = tid / LANES;
  let lane = tid % LANES;
  let rho = min(row0 + r, rows - 1u); // rows past the end repeat the last row and write nothing
  let t = rho / G;
  let h = kvh * G + rho % G;
  let qrow = (t * params.Hq + h) * HEAD_DIM;
  let row_end = key_end(t);
  let block_end = key_end((min(row0 + BQ, rows) - 1u) / G); // workgroup-uniform

  for (var e = tid; e < BQ * DP; e += WG_X) {
    let d = e % DP;
    let at = (e / DP) * RS + d;
    let rr = min(row0 + e / DP, rows - 1u);
    var qx = 0.0f;
    var dx = 0.0f;
    if (d < HEAD_DIM) {
      let i = ((rr / G) * params.Hq + kvh * G + rr % G) * HEAD_DIM + d;
      qx = q[i];
      dx = dout[i];
    }
    q_s[at] = qx;
    do_s[at] = dx;
  }
  // delta = dout·out for this row (each lane of the row computes it; lane 0 stores it).
  var delta_r = 0.0f;
  for (var d = 0u; d < HEAD_DIM; d++) { delta_r += dout[qrow + d] * out[qrow + d]; }
  let lse_r = lse[h * params.T + t];

  var acc: array<f32, DPT>; // dq over this lane's dims, before the scale
  let ntiles = (block_end + BK - 1u) / BK;
  for (var kt = 0u; kt < ntiles; kt++) {
    let j0 = kt * BK;
    workgroupBarrier(); // previous tile consumed (and q_s, do_s written)
    load_kv_tile(tid, kvh, j0, block_end);
    workgroupBarrier();
    for (var jj = lane; jj < BK; jj += LANES) {
      var ds = 0.0f;
      if (j0 + jj < row_end) {
        var sdot = 0.0f;
        var pdot = 0.0f;
        for (var d = 0u; d < HEAD_DIM; d++) {
          sdot += q_s[r * RS + d] * k_s[jj * RS + d];
          pdot += do_s[r * RS + d] * v_s[jj * RS + d];
        }
        ds = exp(sdot * params.scale - lse_r) * (pdot - delta_r);
      }
      ds_s[r * BK + jj] = ds;
    }
    workgroupBarrier();
    for (var jj = 0u; jj < BK; jj++) {
      let ds = ds_s[r * BK + jj];
      for (var c = 0u; c < DPT; c++) { acc[c] += ds * k_s[jj * RS + lane + LANES * c]; }
    }
  }

  if (row0 + r < rows) {
    for (var c = 0u; c < DPT; c++) {
      let d = lane + LANES * c;
      if (d < HEAD_DIM) { dq[qrow + d] = acc[c] * params.scale; }
    }
    if (lane == 0u) { delta[h * params.T + t] = delta_r; }
  }
}
