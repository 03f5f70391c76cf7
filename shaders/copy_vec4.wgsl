// out = a, 16 bytes a thread: the streaming reference of bench/kernels.ts, against which the
// decode GEMV's bandwidth is measured (a scalar copy pays 4× the invocations, which a software
// adapter runs as CPU work, and so understates the bytes an adapter can move). Bindings and
// `params` come from web/src/gpu/ops/copy-vec4.ts; the CPU twin is web/src/gpu/cpu/copy-vec4.ts.
//   a: (n) vec4<f32>   out: (n) vec4<f32>   params.n: vec4s
// The grid may be 2-D past the per-dimension workgroup limit.

@compute @workgroup_size(WG_X)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG_X;
  if (i >= params.n) { return; }
  out[i] = a[i];
}
