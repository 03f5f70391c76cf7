// Router top-k (Mixtral / Qwen2-MoE gate). Bindings and `params` are generated from the
// declaration in web/src/gpu/ops/moe.ts. One thread per token: E is small (8–64), so a serial
// O(k·E) scan per token beats a workgroup reduction, and T supplies the parallelism.
//   logits: (T, E)   weights: (T, k)   experts: i32 (T, k)
// Selection compares logits (softmax is monotone): the j-th pick is the largest
// (logit, −index) below the (j−1)-th pick, so ties go to the lower expert index.

@compute @workgroup_size(WG_X)
fn router_topk(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let t = gid.x + gid.y * nwg.x * WG_X;
  if (t >= params.T) { return; }
  let E = params.E;
  let k = params.k;
  let row = t * E;
  var m = logits[row];
  for (var e = 1u; e < E; e++) { m = max(m, logits[row + e]); }
  var s = 0.0;
  for (var e = 0u; e < E; e++) { s += exp(logits[row + e] - m); }
  var pv = 0.0;
  var pi = -1i;
  var sel = 0.0;
  for (var j = 0u; j < k; j++) {
    var best = -1i;
    var bv = 0.0;
    for (var e = 0u; e < E; e++) {
      let l = logits[row + e];
      let admissible = j == 0u || l < pv || (l == pv && i32(e) > pi);
      if (admissible && (best < 0 || l > bv)) { best = i32(e); bv = l; }
    }
    if (best < 0) { best = first_unpicked(t * k, j, E); } // only rows with NaN get here
    pv = bv;
    pi = best;
    experts[t * k + j] = best;
    let p = exp(logits[row + u32(best)] - m) / s;
    weights[t * k + j] = p;
    sel += p;
  }
  if (params.renormalize != 0u) {
    for (var j = 0u; j < k; j++) { weights[t * k + j] = weights[t * k + j] / sel; }
  }
}

// Lowest expert not among experts[base .. base+j): keeps the k choices distinct.
fn first_unpicked(base: u32, j: u32, E: u32) -> i32 {
  for (var e = 0i; e < i32(E); e++) {
    var used = false;
    for (var i = 0u; i < j; i++) { if (experts[base + i] == e) { used = true; } }
    if (!used) { return e; }
  }
  return 0i;
}
