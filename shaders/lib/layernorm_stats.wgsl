// LayerNorm's row statistics, one definition for the forward (norm.wgsl) and the backward
// (norm_backward.wgsl), which must agree bit for bit. Needs the binding x: (rows, C),
// `params.eps` and WG_X threads per row; holds barriers (call in uniform control flow).

// #include "workgroup_reduce"

// (mean, rstd) of the row of C channels at x[base]: mean first, then the biased variance of
// x − mean (two passes), rstd = rsqrt(var + eps). Returned to every thread.
fn layernorm_stats(lid: u32, base: u32, C: u32) -> vec2f {
  var s = 0.0;
  for (var c = lid; c < C; c += WG_X) { s += x[base + c]; }
  let mean = workgroup_sum(lid, s) / f32(C);
  var ss = 0.0;
  for (var c = lid; c < C; c += WG_X) { let d = x[base + c] - mean; ss += d * d; }
  return vec2f(mean, inverseSqrt(workgroup_sum(lid, ss) / f32(C) + params.eps));
}
