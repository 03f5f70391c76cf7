// Attention backward pass 1 for software adapters (see attention_rows.wgsl): one thread per query
// row (t, h), no workgroup memory. Same contract as attention_bwd_dq.wgsl, whose declaration it
// shares: writes dq and delta = rowsum(dout ⊙ out) for pass 2 (attention_bwd_rows_dkdv.wgsl).
//   q, dout, out, dq: (T, Hq, D)    k, v: (S, Hkv, D)    lse, delta: (Hq, T)
// With P = exp(scale·q·k − lse), dP = dout·v:  dS = P ⊙ (dP − delta),  dq = scale · dS·K.
// Grid (flattened): T·Hq threads, index t·Hq + h. Variant constant: HEAD_DIM = D.

// #include "attention_causal"

@compute @workgroup_size(WG_X)
fn attn_bwd_rows_dq(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let idx = gid.x + gid.y * nwg.x * WG_X; // t·Hq + h
  if (idx >= params.T * params.Hq) { return; }
  let t = idx / params.Hq;
  let h = idx % params.Hq;
  let kvh = h / params.G;
  let row_end = key_end(t);
  let qb = idx * HEAD_DIM;

  var qr: array<f32, HEAD_DIM>;
  var dor: array<f32, HEAD_DIM>;
  var delta_r = 0.0f;
  for (var d = 0u; d < HEAD_DIM; d++) {
    qr[d] = q[qb + d];
    dor[d] = dout[qb + d];
    delta_r += dor[d] * out[qb + d];
  }
  let lse_r = lse[h * params.T + t];
  var acc: array<f32, HEAD_DIM>; // dq before the scale
  for (var j = 0u; j < row_end; j++) {
    let kb = (j * params.Hkv + kvh) * HEAD_DIM;
    var s = 0.0f;
    var dp = 0.0f;
    for (var d = 0u; d < HEAD_DIM; d++) {
      s += qr[d] * k[kb + d];
      dp += dor[d] * v[kb + d];
    }
    let ds = exp(s * params.scale - lse_r) * (dp - delta_r);
    for (var d = 0u; d < HEAD_DIM; d++) { acc[d] += ds * k[kb + d]; }
  }
  for (var d = 0u; d < HEAD_DIM; d++) { dq[qb + d] = acc[d] * params.scale; }
  delta[h * params.T + t] = delta_r;
}
