// Row normalisation forward: one workgroup per row of C channels, reduced in workgroup memory.
// Bindings and `params` are generated from the declaration in web/src/gpu/ops/norm.ts;
// WG_X (a power of two, picked from C by the variant builder) is the threads per row.
//   x:   (rows, C)
//   w:   (C) weight
//   b:   (C) bias (layernorm); rmsnorm binds `w` again and never reads it
//   out: (rows, C)
//   params.rows: u32, // rows (one workgroup each; the grid may be 2-D past 65535)
//   params.C: u32,    // channels per row
//   params.eps: f32,  // added to the variance before the reciprocal square root
// Sums run in f32: each thread adds its strided slice in order, then a fixed tree adds the
// WG_X partials (workgroup_sum from shaders/lib/workgroup_reduce.wgsl), so results are
// deterministic.

// #include "workgroup_reduce"
// #include "layernorm_stats"

// Hugging Face LlamaRMSNorm: out = w · (x · rsqrt(mean(x²) + eps))
@compute @workgroup_size(WG_X)
fn rmsnorm(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= params.rows) { return; }
  let C = params.C;
  let base = row * C;
  var ss = 0.0;
  for (var c = lid; c < C; c += WG_X) { let v = x[base + c]; ss += v * v; }
  let r = inverseSqrt(workgroup_sum(lid, ss) / f32(C) + params.eps);
  for (var c = lid; c < C; c += WG_X) { out[base + c] = w[c] * (x[base + c] * r); }
}

// torch.nn.LayerNorm: out = (x − mean) · rsqrt(var + eps) · w + b, biased variance (two passes)
@compute @workgroup_size(WG_X)
fn layernorm(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= params.rows) { return; }
  let C = params.C;
  let base = row * C;
  let mr = layernorm_stats(lid, base, C); // (mean, rstd)
  let mean = mr.x;
  let r = mr.y;
  for (var c = lid; c < C; c += WG_X) { out[base + c] = (x[base + c] - mean) * r * w[c] + b[c]; }
}
