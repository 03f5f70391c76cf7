// Sum of squares, deterministic: a fixed partition into params.parts workgroups, each thread
// summing a fixed strided slice in order, then a fixed tree (workgroup_sum from
// shaders/lib/workgroup_reduce.wgsl); a second single-workgroup pass adds the partials the same
// way. Bindings and `params` are generated from the declaration in web/src/gpu/ops/optim.ts;
// WG_X is a power of two.
//   a:       (n)
//   partial: (parts) one sum per workgroup of the first pass
//   out:     (k) the total lands in out[params.slot] (clipGradNorm fills one slot per tensor)
//   params.n: u32, params.parts: u32, params.slot: u32

// #include "workgroup_reduce"

// Workgroup w sums a[i]² for i = w·WG_X + lid + k·parts·WG_X.
@compute @workgroup_size(WG_X)
fn sum_squares_partial(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let stride = params.parts * WG_X;
  var s = 0.0;
  for (var i = wid.x * WG_X + lid; i < params.n; i += stride) { let x = a[i]; s += x * x; }
  s = workgroup_sum(lid, s);
  if (lid == 0u) { partial[wid.x] = s; }
}

// One workgroup: out[slot] = Σ partial (0 when parts = 0).
@compute @workgroup_size(WG_X)
fn sum_squares_final(@builtin(local_invocation_index) lid: u32) {
  var s = 0.0;
  for (var i = lid; i < params.parts; i += WG_X) { s += partial[i]; }
  s = workgroup_sum(lid, s);
  if (lid == 0u) { out[params.slot] = s; }
}
