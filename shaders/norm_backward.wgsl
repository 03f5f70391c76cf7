// Row normalisation backward. Bindings and `params` are generated from the declaration in
// web/src/gpu/ops/norm.ts. Two dispatches share this layout:
//   1. *_backward_dx: one workgroup per row (WG_X threads); writes dx and the row's statistics.
//   2. norm_backward_params: one thread per channel, looping over rows in order, so dw and db
//      are deterministic without float atomics.
//   x:     (rows, C)
//   w:     (C)
//   dy:    (rows, C)
//   dx:    (rows, C)
//   stats: (rows, 2) [mean, rstd] per row; rmsnorm stores mean = 0
//   dw:    (C) = Σ_rows dy · (x − mean) · rstd
//   db:    (C) = Σ_rows dy, written only when HAS_BIAS (rmsnorm binds a placeholder)
//   params.rows: u32, params.C: u32, params.eps: f32 (as in the forward)

// #include "workgroup_reduce"
// #include "layernorm_stats"

// y = w · x · r, r = rsqrt(mean(x²) + eps), g = dy · w:
// dx = r · g − x · r³ · Σ(g · x) / C
@compute @workgroup_size(WG_X)
fn rmsnorm_backward_dx(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= params.rows) { return; }
  let C = params.C;
  let base = row * C;
  var ss = 0.0;
  var gx = 0.0;
  for (var c = lid; c < C; c += WG_X) {
    let v = x[base + c];
    ss += v * v;
    gx += dy[base + c] * w[c] * v;
  }
  let r = inverseSqrt(workgroup_sum(lid, ss) / f32(C) + params.eps);
  let k = r * r * r * workgroup_sum(lid, gx) / f32(C);
  for (var c = lid; c < C; c += WG_X) {
    dx[base + c] = r * dy[base + c] * w[c] - x[base + c] * k;
  }
  if (lid == 0u) { stats[2u * row] = 0.0; stats[2u * row + 1u] = r; }
}

// xh = (x − mean) · r, g = dy · w:  dx = r · (g − mean(g) − xh · mean(g · xh))
@compute @workgroup_size(WG_X)
fn layernorm_backward_dx(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= params.rows) { return; }
  let C = params.C;
  let base = row * C;
  let mr = layernorm_stats(lid, base, C); // (mean, rstd)
  let mean = mr.x;
  let r = mr.y;
  var sg = 0.0;
  var sgx = 0.0;
  for (var c = lid; c < C; c += WG_X) {
    let g = dy[base + c] * w[c];
    sg += g;
    sgx += g * (x[base + c] - mean) * r;
  }
  let mg = workgroup_sum(lid, sg) / f32(C);
  let mgx = workgroup_sum(lid, sgx) / f32(C);
  for (var c = lid; c < C; c += WG_X) {
    let xh = (x[base + c] - mean) * r;
    dx[base + c] = r * (dy[base + c] * w[c] - mg - xh * mgx);
  }
  if (lid == 0u) { stats[2u * row] = mean; stats[2u * row + 1u] = r; }
}

// One thread per channel c (flat grid, 2-D past 65535 workgroups).
@compute @workgroup_size(WG_X)
fn norm_backward_params(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let c = gid.x + gid.y * nwg.x * WG_X;
  let C = params.C;
  if (c >= C) { return; }
  var sw = 0.0;
  var sb = 0.0;
  for (var r = 0u; r < params.rows; r++) {
    let d = dy[r * C + c];
    sw += d * (x[r * C + c] - stats[2u * r]) * stats[2u * r + 1u];
    sb += d;
  }
  dw[c] = sw;
  if (HAS_BIAS) { db[c] = sb; }
}
