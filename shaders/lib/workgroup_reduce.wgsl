// Workgroup reductions over f32, shared by the row kernels (norm, softmax, loss, optim_reduce).
// Needs WG_X (a power of two, from the generated header) threads in a 1-D workgroup, called with
// the local_invocation_index by every thread in uniform control flow (they hold barriers).
// A fixed tree adds the WG_X values, so results are deterministic. Both share `red`, which a
// call leaves ready for the next one.

var<workgroup> red: array<f32, WG_X>;

// Sum of `v` over the workgroup, returned to every thread.
fn workgroup_sum(lid: u32, v: f32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var s = WG_X / 2u; s > 0u; s = s >> 1u) {
    if (lid < s) { red[lid] += red[lid + s]; }
    workgroupBarrier();
  }
  let total = red[0];
  workgroupBarrier(); // `red` is reused by the next call
  return total;
}

// Max of `v` over the workgroup, returned to every thread.
fn workgroup_max(lid: u32, v: f32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var s = WG_X / 2u; s > 0u; s = s >> 1u) {
    if (lid < s) { red[lid] = max(red[lid], red[lid + s]); }
    workgroupBarrier();
  }
  let total = red[0];
  workgroupBarrier();
  return total;
}
