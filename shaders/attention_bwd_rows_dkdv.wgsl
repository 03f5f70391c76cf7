// Attention backward pass 2 for software adapters (see attention_rows.wgsl): one thread per key
// row (j, kvh) loops over every query row of the G heads that read kv head kvh, in a fixed order,
// so dk/dv have one writer each and no atomics. Same contract as attention_bwd_dkdv.wgsl, whose
// declaration it shares.
//   q, dout: (T, Hq, D)    k, v, dk, dv: (S, Hkv, D)    lse, delta: (Hq, T) (delta from pass 1)
//   dv_j = Σ_t P_tj·dout_t,   dk_j = scale · Σ_t dS_tj·q_t;   rows at or past kvLen are zero.
// Grid (flattened): S·Hkv threads, index j·Hkv + kvh. Variant constant: HEAD_DIM = D.

@compute @workgroup_size(WG_X)
fn attn_bwd_rows_dkdv(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let idx = gid.x + gid.y * nwg.x * WG_X; // j·Hkv + kvh
  if (idx >= params.S * params.Hkv) { return; }
  let j = idx / params.Hkv;
  let kvh = idx % params.Hkv;
  let kb = idx * HEAD_DIM;

  var acc_k: array<f32, HEAD_DIM>; // dk before the scale
  var acc_v: array<f32, HEAD_DIM>;
  if (j < params.kvLen) {
    var kr: array<f32, HEAD_DIM>;
    var vr: array<f32, HEAD_DIM>;
    for (var d = 0u; d < HEAD_DIM; d++) {
      kr[d] = k[kb + d];
      vr[d] = v[kb + d];
    }
    // Causal: queries t < j − qOffset do not see key j.
    var t0 = 0u;
    if (params.causal != 0u && j > params.qOffset) { t0 = j - params.qOffset; }
    for (var t = t0; t < params.T; t++) {
      for (var g = 0u; g < params.G; g++) {
        let h = kvh * params.G + g;
        let qb = (t * params.Hq + h) * HEAD_DIM;
        var s = 0.0f;
        var dp = 0.0f;
        for (var d = 0u; d < HEAD_DIM; d++) {
          s += q[qb + d] * kr[d];
          dp += dout[qb + d] * vr[d];
        }
        let p = exp(s * params.scale - lse[h * params.T + t]);
        let ds = p * (dp - delta[h * params.T + t]);
        for (var d = 0u; d < HEAD_DIM; d++) {
          acc_v[d] += p * dout[qb + d];
          acc_k[d] += ds * q[qb + d];
        }
      }
    }
  }
  for (var d = 0u; d < HEAD_DIM; d++) {
    dk[kb + d] = acc_k[d] * params.scale;
    dv[kb + d] = acc_v[d];
  }
}
