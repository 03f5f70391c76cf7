// Attention backward pass 2 for software adapters (see attention_rows.wgsl): one thread per key
// row (j, kvh) loops over every query row of the G heads that read kv head kvh, in a fixed order,
// so dk/dv have one writer each and no atomics. Same contract as attention_bwd_dkdv.wgsl, whose
// declaration it shares.
//   q, dout: (T, Hq, D)    k, v, dk, dv: (S, Hkv, D)    lse, delta: (Hq, T) (delta from pass 1)
//   dv_j = Σ_t P_tj·dout_t,   dk_j = scale · Σ_t dS_tj·q_t;   rows at or past kvLen are zero.
// Grid (flattened): S·Hkv threads, index j·Hkv + kvh. Variant constant: HEAD_DIM = D. Rows are
// held as vec4s (D4 = ⌈D/4⌉, zero-padded), as in attention_rows.wgsl.

const D4: u32 = (HEAD_DIM + 3u) / 4u;

// Elements [4c, 4c + 4) of the row at `base` as a vec4, zero past the head dim.
fn q4(base: u32, c: u32) -> vec4f {
  let i = base + 4u * c;
  if (4u * c + 4u <= HEAD_DIM) { return vec4f(q[i], q[i + 1u], q[i + 2u], q[i + 3u]); }
  var r = vec4f(0.0f);
  for (var e = 0u; 4u * c + e < HEAD_DIM; e++) { r[e] = q[i + e]; }
  return r;
}
fn k4(base: u32, c: u32) -> vec4f {
  let i = base + 4u * c;
  if (4u * c + 4u <= HEAD_DIM) { return vec4f(k[i], k[i + 1u], k[i + 2u], k[i + 3u]); }
  var r = vec4f(0.0f);
  for (var e = 0u; 4u * c + e < HEAD_DIM; e++) { r[e] = k[i + e]; }
  return r;
}
fn v4(base: u32, c: u32) -> vec4f {
  let i = base + 4u * c;
  if (4u * c + 4u <= HEAD_DIM) { return vec4f(v[i], v[i + 1u], v[i + 2u], v[i + 3u]); }
  var r = vec4f(0.0f);
  for (var e = 0u; 4u * c + e < HEAD_DIM; e++) { r[e] = v[i + e]; }
  return r;
}
fn dout4(base: u32, c: u32) -> vec4f {
  let i = base + 4u * c;
  if (4u * c + 4u <= HEAD_DIM) { return vec4f(dout[i], dout[i + 1u], dout[i + 2u], dout[i + 3u]); }
  var r = vec4f(0.0f);
  for (var e = 0u; 4u * c + e < HEAD_DIM; e++) { r[e] = dout[i + e]; }
  return r;
}

@compute @workgroup_size(WG_X)
fn attn_bwd_rows_dkdv(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let idx = gid.x + gid.y * nwg.x * WG_X; // j·Hkv + kvh
  if (idx >= params.S * params.Hkv) { return; }
  let j = idx / params.Hkv;
  let kvh = idx % params.Hkv;
  let kb = idx * HEAD_DIM;

  var acc_k: array<vec4f, D4>; // dk before the scale
  var acc_v: array<vec4f, D4>;
  if (j < params.kvLen) {
    var kr: array<vec4f, D4>;
    var vr: array<vec4f, D4>;
    for (var c = 0u; c < D4; c++) {
      kr[c] = k4(kb, c);
      vr[c] = v4(kb, c);
    }
    // Causal: queries t < j − qOffset do not see key j.
    var t0 = 0u;
    if (params.causal != 0u && j > params.qOffset) { t0 = j - params.qOffset; }
    for (var t = t0; t < params.T; t++) {
      for (var g = 0u; g < params.G; g++) {
        let h = kvh * params.G + g;
        let qb = (t * params.Hq + h) * HEAD_DIM;
        var s4 = vec4f(0.0f);
        var dp4 = vec4f(0.0f);
        for (var c = 0u; c < D4; c++) {
          s4 += q4(qb, c) * kr[c];
          dp4 += dout4(qb, c) * vr[c];
        }
        let p = exp((s4.x + s4.y + s4.z + s4.w) * params.scale - lse[h * params.T + t]);
        let ds = p * ((dp4.x + dp4.y + dp4.z + dp4.w) - delta[h * params.T + t]);
        for (var c = 0u; c < D4; c++) {
          acc_v[c] += p * dout4(qb, c);
          acc_k[c] += ds * q4(qb, c);
        }
      }
    }
  }
  for (var d = 0u; d < HEAD_DIM; d++) {
    dk[kb + d] = acc_k[d / 4u][d % 4u] * params.scale;
    dv[kb + d] = acc_v[d / 4u][d % 4u];
  }
}
