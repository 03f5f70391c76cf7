// Router top-k backward: d logits of L = Σ_j dweights[t,j]·weights[t,j] (the selection itself is
// not differentiated). One thread per token. With p = softmax(l), Z = Σ_j p[e_j] (renormalised)
// or 1, gw = Σ_j g_j·p[e_j]/Z, G_m = Σ_{j: e_j = m} g_j, c_m = #{j: e_j = m} (renormalised) or 1:
//   dlogits[t, m] = p_m / Z · (G_m − c_m·gw)
//   logits: (T, E)   experts: i32 (T, k)   dweights: (T, k)   dlogits: (T, E)
// Out-of-range expert ids (only possible from a caller bug) are clamped like the forward's reads.

fn expert_at(i: u32) -> u32 {
  return u32(clamp(experts[i], 0i, i32(params.E) - 1i));
}

@compute @workgroup_size(WG_X)
fn router_topk_backward(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let t = gid.x + gid.y * nwg.x * WG_X;
  if (t >= params.T) { return; }
  let E = params.E;
  let k = params.k;
  let row = t * E;
  let renorm = params.renormalize != 0u;
  var m = logits[row];
  for (var e = 1u; e < E; e++) { m = max(m, logits[row + e]); }
  var s = 0.0;
  for (var e = 0u; e < E; e++) { s += exp(logits[row + e] - m); }
  var z = 1.0;
  if (renorm) {
    z = 0.0;
    for (var j = 0u; j < k; j++) { z += exp(logits[row + expert_at(t * k + j)] - m) / s; }
  }
  var gw = 0.0;
  for (var j = 0u; j < k; j++) {
    gw += dweights[t * k + j] * (exp(logits[row + expert_at(t * k + j)] - m) / s) / z;
  }
  for (var e = 0u; e < E; e++) {
    var g = 0.0;
    var c = select(1.0, 0.0, renorm);
    for (var j = 0u; j < k; j++) {
      if (expert_at(t * k + j) == e) {
        g += dweights[t * k + j];
        if (renorm) { c += 1.0; }
      }
    }
    let p = exp(logits[row + e] - m) / s;
    dlogits[row + e] = p / z * (g - c * gw);
  }
}
