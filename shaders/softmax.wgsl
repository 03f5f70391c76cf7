// Softmax over the last dim and its backward: one workgroup per row of C, reductions in
// workgroup memory (shaders/lib/workgroup_reduce.wgsl). Bindings and `params` are generated from
// the declaration in web/src/gpu/ops/softmax.ts; WG_X (a power of two) is the threads per row.
//   a:   (rows, C) softmax: x;  softmax_backward: y (the forward's output)
//   b:   (rows, C) softmax: bound to x again, unread;  softmax_backward: dy
//   out: (rows, C) softmax: y;  softmax_backward: dx
//   params.rows: u32, // rows, one workgroup each (the grid may be 2-D past 65535)
//   params.C: u32,    // row length
// Masking: an element ≤ −F32_MAX (i.e. −∞ or −3.4e38) is masked and gets probability 0 without
// ever entering exp(); a row with every element masked yields all zeros (PyTorch gives NaN),
// so fully masked attention rows contribute nothing instead of poisoning the sum.

const NEG_MAX: f32 = -0x1.fffffep+127f; // −F32_MAX

// #include "workgroup_reduce"

// y = exp(x − max) / Σ exp(x − max)
@compute @workgroup_size(WG_X)
fn softmax(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= params.rows) { return; }
  let C = params.C;
  let base = row * C;
  var m = NEG_MAX;
  for (var c = lid; c < C; c += WG_X) { m = max(m, a[base + c]); }
  m = workgroup_max(lid, m);
  var s = 0.0;
  for (var c = lid; c < C; c += WG_X) {
    let v = a[base + c];
    let e = select(exp(v - m), 0.0, v <= NEG_MAX);
    out[base + c] = e;
    s += e;
  }
  s = workgroup_sum(lid, s);
  // All masked: every e is 0 and s is 0; write zeros rather than 0/0.
  let inv = select(1.0 / s, 0.0, s == 0.0);
  for (var c = lid; c < C; c += WG_X) { out[base + c] = out[base + c] * inv; }
}

// dx = y · (dy − Σ y·dy)
@compute @workgroup_size(WG_X)
fn softmax_backward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= params.rows) { return; }
  let C = params.C;
  let base = row * C;
  var s = 0.0;
  for (var c = lid; c < C; c += WG_X) { s += a[base + c] * b[base + c]; }
  s = workgroup_sum(lid, s);
  for (var c = lid; c < C; c += WG_X) { out[base + c] = a[base + c] * (b[base + c] - s); }
}
