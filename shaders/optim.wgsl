// AdamW step, in place, one thread per element, following PyTorch's single-tensor AdamW
// (torch/optim/adamw.py, decoupled weight decay, bias-corrected) operation by operation.
// Bindings and `params` are generated from the declaration in web/src/gpu/ops/optim.ts; the
// host folds the step-dependent scalars in f64 exactly as PyTorch does in Python.
//   grad:  (n)
//   param: (n) updated in place
//   m:     (n) first moment (exp_avg), updated in place
//   v:     (n) second moment (exp_avg_sq), updated in place
//   params.n: u32,          // elements
//   params.decay: f32,      // 1 − lr·weight_decay
//   params.w1: f32,         // 1 − beta1 (lerp weight)
//   params.beta2: f32,
//   params.c2: f32,         // 1 − beta2
//   params.step_size: f32,  // lr / (1 − beta1^step)
//   params.bc2_sqrt: f32,   // √(1 − beta2^step)
//   params.eps: f32,

@compute @workgroup_size(WG_X)
fn adamw(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG_X;
  if (i >= params.n) { return; }
  let g = grad[i];
  let p = param[i] * params.decay;                       // param.mul_(1 − lr·wd)
  // exp_avg.lerp_(grad, 1 − beta1): ATen's lerp takes the start-based form for weight < 0.5
  let mi = m[i];
  let mn = select(g - (g - mi) * (1.0 - params.w1), mi + params.w1 * (g - mi), params.w1 < 0.5);
  let vn = v[i] * params.beta2 + params.c2 * g * g;      // exp_avg_sq.mul_(beta2).addcmul_(g, g, 1 − beta2)
  let denom = sqrt(vn) / params.bc2_sqrt + params.eps;   // (exp_avg_sq.sqrt() / bc2_sqrt).add_(eps)
  param[i] = p + (-params.step_size) * (mn / denom);     // param.addcdiv_(exp_avg, denom, −step_size)
  m[i] = mn;
  v[i] = vn;
}
