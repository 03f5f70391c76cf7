// Attention backward, pass 2 of 2 (flash-attention-2): dk and dv. Each workgroup owns a block of
// key rows of one kv head and loops over every query row of the G query heads that read it, so
// each dk/dv element has one writer and GQA's sum over heads has a fixed order: no atomics.
//   q, dout: (T, Hq, D)    k, v, dk, dv: (S, Hkv, D)    lse, delta: (Hq, T) (delta from pass 1)
// With P = exp(scale·q·k − lse), dP = dout·v, dS = P ⊙ (dP − delta):
//   dv_j = Σ_t P_tj·dout_t,   dk_j = scale · Σ_t dS_tj·q_t.
// Variant constants: HEAD_DIM = D; LANES threads per key row, lane l owning dims d = l + LANES·c
// (c < DPT); DP the padded row, RS = DP + 1 its stride; BKB = WG_X / LANES key rows per workgroup; BQB query rows per tile.
// Grid: (⌈S / BKB⌉, Hkv). Rows of dk/dv at or past kvLen are written as zeros.

var<workgroup> k_s: array<f32, BKB * RS>; //  (BKB, RS) this block's keys
var<workgroup> v_s: array<f32, BKB * RS>; //  (BKB, RS) this block's values
var<workgroup> q_s: array<f32, BQB * RS>; //  (BQB, RS) query tile
var<workgroup> do_s: array<f32, BQB * RS>; // (BQB, RS) its output gradients
var<workgroup> lse_s: array<f32, BQB>; //     (BQB)
var<workgroup> dl_s: array<f32, BQB>; //      (BQB) delta
var<workgroup> p_s: array<f32, BKB * BQB>; // (BKB, BQB) P of the tile
var<workgroup> ds_s: array<f32, BKB * BQB>; // (BKB, BQB) dS of the tile

// #include "attention_causal"

@compute @workgroup_size(WG_X)
fn attn_bwd_dkdv(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3u) {
  let G = params.G;
  let kvh = wid.y;
  let rows = params.T * G;
  let j0 = wid.x * BKB;
  let jr = tid / LANES;
  let lane = tid % LANES;
  let j = j0 + jr;

  for (var e = tid; e < BKB * DP; e += WG_X) {
    let jj = j0 + e / DP;
    let d = e % DP;
    let at = (e / DP) * RS + d;
    var kx = 0.0f;
    var vx = 0.0f;
    if (jj < params.kvLen && d < HEAD_DIM) {
      let i = (jj * params.Hkv + kvh) * HEAD_DIM + d;
      kx = k[i];
      vx = v[i];
    }
    k_s[at] = kx;
    v_s[at] = vx;
  }

  // Workgroup-uniform range of query rows that can see any key of the block: causal queries
  // t < j0 − qOffset see none of them; a block wholly past kvLen is seen by nobody.
  var rho_start = 0u;
  if (j0 >= params.kvLen) {
    rho_start = rows;
  } else if (params.causal != 0u && j0 > params.qOffset) {
    rho_start = min(rows, (j0 - params.qOffset) * G);
  }

  var acc_k: array<f32, DPT>; // dk over this lane's dims, before the scale
  var acc_v: array<f32, DPT>; // dv over this lane's dims
  let ntiles = (rows - rho_start + BQB - 1u) / BQB;
  for (var qt = 0u; qt < ntiles; qt++) {
    let rho0 = rho_start + qt * BQB;
    workgroupBarrier(); // previous tile consumed (and k_s, v_s written)
    for (var e = tid; e < BQB * DP; e += WG_X) {
      let rr = min(rho0 + e / DP, rows - 1u);
      let d = e % DP;
      let at = (e / DP) * RS + d;
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
    for (var i = tid; i < BQB; i += WG_X) {
      let rr = min(rho0 + i, rows - 1u);
      let hi = (kvh * G + rr % G) * params.T + rr / G;
      lse_s[i] = lse[hi];
      dl_s[i] = delta[hi];
    }
    workgroupBarrier();
    for (var i = lane; i < BQB; i += LANES) {
      let rho = rho0 + i;
      let t = rho / G;
      var p = 0.0f;
      var ds = 0.0f;
      if (rho < rows && j < key_end(t)) {
        var sdot = 0.0f;
        var pdot = 0.0f;
        for (var d = 0u; d < HEAD_DIM; d++) {
          sdot += q_s[i * RS + d] * k_s[jr * RS + d];
          pdot += do_s[i * RS + d] * v_s[jr * RS + d];
        }
        p = exp(sdot * params.scale - lse_s[i]);
        ds = p * (pdot - dl_s[i]);
      }
      p_s[jr * BQB + i] = p;
      ds_s[jr * BQB + i] = ds;
    }
    workgroupBarrier();
    for (var i = 0u; i < BQB; i++) {
      let p = p_s[jr * BQB + i];
      let ds = ds_s[jr * BQB + i];
      for (var c = 0u; c < DPT; c++) {
        let d = lane + LANES * c;
        acc_v[c] += p * do_s[i * RS + d];
        acc_k[c] += ds * q_s[i * RS + d];
      }
    }
  }

  if (j < params.S) {
    for (var c = 0u; c < DPT; c++) {
      let d = lane + LANES * c;
      if (d < HEAD_DIM) {
        let i = (j * params.Hkv + kvh) * HEAD_DIM + d;
        dk[i] = acc_k[c] * params.scale;
        dv[i] = acc_v[c];
      }
    }
  }
}
