// Attention backward pass 1 for software adapters (see attention_rows.wgsl): one thread per query
// row (t, h), no workgroup memory. Same contract as attention_bwd_dq.wgsl, whose declaration it
// shares: writes dq and delta = rowsum(dout ⊙ out) for pass 2 (attention_bwd_rows_dkdv.wgsl).
//   q, dout, out, dq: (T, Hq, D)    k, v: (S, Hkv, D)    lse, delta: (Hq, T)
// With P = exp(scale·q·k − lse), dP = dout·v:  dS = P ⊙ (dP − delta),  dq = scale · dS·K.
// Grid (flattened): T·Hq threads, index t·Hq + h. Variant constant: HEAD_DIM = D. Rows are held
// as vec4s (D4 = ⌈D/4⌉, zero-padded), as in attention_rows.wgsl.

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
fn out4(base: u32, c: u32) -> vec4f {
  let i = base + 4u * c;
  if (4u * c + 4u <= HEAD_DIM) { return vec4f(out[i], out[i + 1u], out[i + 2u], out[i + 3u]); }
  var r = vec4f(0.0f);
  for (var e = 0u; 4u * c + e < HEAD_DIM; e++) { r[e] = out[i + e]; }
  return r;
}

@compute @workgroup_size(WG_X)
fn attn_bwd_rows_dq(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let idx = gid.x + gid.y * nwg.x * WG_X; // t·Hq + h
  if (idx >= params.T * params.Hq) { return; }
  let t = idx / params.Hq;
  let h = idx % params.Hq;
  let kvh = h / params.G;
  var row_end = params.kvLen;
  if (params.causal != 0u) { row_end = min(params.kvLen, params.qOffset + t + 1u); }
  let qb = idx * HEAD_DIM;

  var qr: array<vec4f, D4>;
  var dor: array<vec4f, D4>;
  var dl4 = vec4f(0.0f);
  for (var c = 0u; c < D4; c++) {
    qr[c] = q4(qb, c);
    dor[c] = dout4(qb, c);
    dl4 += dor[c] * out4(qb, c);
  }
  let delta_r = dl4.x + dl4.y + dl4.z + dl4.w;
  let lse_r = lse[h * params.T + t];
  var acc: array<vec4f, D4>; // dq before the scale
  for (var j = 0u; j < row_end; j++) {
    let kb = (j * params.Hkv + kvh) * HEAD_DIM;
    var s4 = vec4f(0.0f);
    var dp4 = vec4f(0.0f);
    for (var c = 0u; c < D4; c++) {
      s4 += qr[c] * k4(kb, c);
      dp4 += dor[c] * v4(kb, c);
    }
    let s = s4.x + s4.y + s4.z + s4.w;
    let dp = dp4.x + dp4.y + dp4.z + dp4.w;
    let ds = exp(s * params.scale - lse_r) * (dp - delta_r);
    for (var c = 0u; c < D4; c++) { acc[c] += ds * k4(kb, c); }
  }
  for (var d = 0u; d < HEAD_DIM; d++) { dq[qb + d] = acc[d / 4u][d % 4u] * params.scale; }
  delta[h * params.T + t] = delta_r;
}
