// Cross-entropy over logits with integer targets. Bindings and `params` are generated from the
// declaration in web/src/gpu/ops/loss.ts; WG_X (a power of two) is the threads per workgroup.
//   logits:  (T, V)
//   targets: (T) i32; params.ignore marks tokens left out of the mean. Other ids outside
//            [0, V) are clamped (callers validate on the host; see validateIds)
//   out:     forward: (1) mean loss;  backward: (T, V) dlogits
//   scratch: forward: (T) per-token losses;  backward: (1) count of non-ignored tokens
//   params.T: u32, params.V: u32, params.ignore: i32
// Forward = cross_entropy_rows (one workgroup per token) then cross_entropy_mean (one
// workgroup). Backward = count_targets (one workgroup) then cross_entropy_backward (one
// workgroup per token). Every reduction is a strided in-order sum then a fixed tree
// (shaders/lib/workgroup_reduce.wgsl): deterministic.

const NEG_MAX: f32 = -0x1.fffffep+127f; // −F32_MAX

// #include "workgroup_reduce"

fn ignored(t: u32) -> bool {
  return targets[t] == params.ignore;
}

fn target_of(t: u32) -> u32 {
  return u32(clamp(targets[t], 0i, i32(params.V) - 1i));
}

// Row max and Σ exp(x − max) of row t, both returned to every thread.
fn row_max_sum(lid: u32, base: u32) -> vec2f {
  var m = NEG_MAX;
  for (var v = lid; v < params.V; v += WG_X) { m = max(m, logits[base + v]); }
  m = workgroup_max(lid, m);
  var s = 0.0;
  for (var v = lid; v < params.V; v += WG_X) { s += exp(logits[base + v] - m); }
  return vec2f(m, workgroup_sum(lid, s));
}

// scratch[t] = logsumexp(logits[t]) − logits[t, target], or 0 when ignored.
// Ignored rows are reduced too: the barriers need uniform control flow, and targets[t] is not
// uniform to the compiler.
@compute @workgroup_size(WG_X)
fn cross_entropy_rows(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let t = wid.x + wid.y * nwg.x;
  if (t >= params.T) { return; }
  let base = t * params.V;
  let ms = row_max_sum(lid, base);
  if (lid == 0u) {
    // (max − x_target) + log Σ: exact for the max term, unlike (max + log Σ) − x_target,
    // which rounds log Σ to the ulp of a large max.
    scratch[t] = select((ms.x - logits[base + target_of(t)]) + log(ms.y), 0.0, ignored(t));
  }
}

// out[0] = Σ scratch / (non-ignored tokens), or 0 when every token is ignored. One workgroup.
@compute @workgroup_size(WG_X)
fn cross_entropy_mean(@builtin(local_invocation_index) lid: u32) {
  var s = 0.0;
  var n = 0.0;
  for (var t = lid; t < params.T; t += WG_X) {
    s += scratch[t];
    n += select(1.0, 0.0, ignored(t));
  }
  s = workgroup_sum(lid, s);
  n = workgroup_sum(lid, n);
  if (lid == 0u) { out[0] = select(s / n, 0.0, n == 0.0); }
}

// scratch[0] = number of non-ignored tokens (exact in f32 up to 2^24 tokens). One workgroup.
@compute @workgroup_size(WG_X)
fn count_targets(@builtin(local_invocation_index) lid: u32) {
  var n = 0.0;
  for (var t = lid; t < params.T; t += WG_X) { n += select(1.0, 0.0, ignored(t)); }
  n = workgroup_sum(lid, n);
  if (lid == 0u) { scratch[0] = n; }
}

// out[t, v] = (softmax(logits[t])[v] − [v == target]) / count, or 0 for an ignored token.
@compute @workgroup_size(WG_X)
fn cross_entropy_backward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let t = wid.x + wid.y * nwg.x;
  if (t >= params.T) { return; }
  let base = t * params.V;
  let ms = row_max_sum(lid, base);
  let skip = ignored(t);
  let k = 1.0 / (ms.y * scratch[0]); // 1/(Σexp · count)
  let inv_count = 1.0 / scratch[0];
  let tgt = target_of(t);
  for (var v = lid; v < params.V; v += WG_X) {
    let p = exp(logits[base + v] - ms.x) * k;
    let g = select(p, p - inv_count, v == tgt);
    out[base + v] = select(g, 0.0, skip);
  }
}
