// Elementwise ops over flat f32 arrays. Bindings and `params` are generated from the one
// declaration in web/src/gpu/ops/elementwise.ts; the variant picks the entry point, WG_X and
// GELU_ERF. A WGSL module must resolve every name in every entry, so all entries share one
// layout:
//   a, b, c: (n) inputs; an op with fewer inputs binds `a` again (read-only aliasing is legal)
//   out:     (n) output; in-place ops read and write it
//   params.n: u32, // elements
//   params.s: f32, // scalar of scale / addScaled / scaleInPlace (unused elsewhere)
// The grid may be 2-D when n exceeds the per-dimension workgroup limit.

fn flat_index(gid: vec3u, nwg: vec3u) -> u32 {
  return gid.x + gid.y * nwg.x * WG_X;
}

// ---- activation math (f32) ----

// Logistic function without overflow: exp() only ever sees a non-positive argument.
fn sigmoid(x: f32) -> f32 {
  let e = exp(-abs(x));
  return select(e / (1.0 + e), 1.0 / (1.0 + e), x >= 0.0);
}

// erfc(z) for z >= 0 with relative error < 1.2e-7 (Numerical Recipes `erfcc`, a Chebyshev fit).
// Relative accuracy in the tail keeps gelu(x) = 0.5·x·erfc(−x/√2) accurate for very negative x,
// where 1 + erf(x/√2) would cancel.
fn erfc_pos(z: f32) -> f32 {
  let t = 1.0 / (1.0 + 0.5 * z);
  let p = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 +
          t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
  return t * exp(-z * z + p);
}

fn erfc_f32(x: f32) -> f32 {
  let e = erfc_pos(abs(x));
  return select(2.0 - e, e, x >= 0.0);
}

const SQRT_HALF: f32 = 0.70710678118654752;        // 1/√2
const INV_SQRT_2PI: f32 = 0.39894228040143268;     // 1/√(2π)
const SQRT_2_OVER_PI: f32 = 0.79788456080286536;   // √(2/π)
const GELU_CUBIC: f32 = 0.044715;
// tanh(±10) is ±1 in f32; clamping keeps tanh implementations built on exp() from overflowing.
const TANH_ARG_MAX: f32 = 10.0;

fn gelu_tanh_inner(x: f32) -> f32 {
  return tanh(clamp(SQRT_2_OVER_PI * (x + GELU_CUBIC * x * x * x), -TANH_ARG_MAX, TANH_ARG_MAX));
}

fn gelu_f32(x: f32) -> f32 {
  if (GELU_ERF) {
    return 0.5 * x * erfc_f32(-x * SQRT_HALF);
  }
  return 0.5 * x * (1.0 + gelu_tanh_inner(x));
}

// d gelu / dx
fn gelu_grad(x: f32) -> f32 {
  if (GELU_ERF) {
    return 0.5 * erfc_f32(-x * SQRT_HALF) + x * INV_SQRT_2PI * exp(-0.5 * x * x);
  }
  let t = gelu_tanh_inner(x);
  return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_CUBIC * x * x);
}

// d silu / dx = s·(1 + x·(1 − s)), s = sigmoid(x)
fn silu_grad(x: f32) -> f32 {
  let s = sigmoid(x);
  return s * (1.0 + x * (1.0 - s));
}

// ---- entries: one per op; each guards i < n ----

// out = a + b
@compute @workgroup_size(WG_X)
fn add(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat_index(gid, nwg);
  if (i >= params.n) { return; }
  out[i] = a[i] + b[i];
}

// out = a − b
@compute @workgroup_size(WG_X)
fn sub(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat_index(gid, nwg);
  if (i >= params.n) { return; }
  out[i] = a[i] - b[i];
}

// out = a · b
@compute @workgroup_size(WG_X)
fn mul(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat_index(gid, nwg);
  if (i >= params.n) { return; }
  out[i] = a[i] * b[i];
}

// out = s · a
@compute @workgroup_size(WG_X)
fn scale(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat_index(gid, nwg);
  if (i >= params.n) { return; }
  out[i] = params.s * a[i];
}

// out = a + s · b
@compute @workgroup_size(WG_X)
fn add_scaled(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat_index(gid, nwg);
  if (i >= params.n) { return; }
  out[i] = a[i] + params.s * b[i];
}

// out += a          (out: destination, a: source, a distinct buffer)
@compute @workgroup_size(WG_X)
fn add_in_place(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat_index(gid, nwg);
  if (i >= params.n) { return; }
  out[i] = out[i] + a[i];
}

// out *= s          (a, b, c are bound to a placeholder and never read)
@compute @workgroup_size(WG_X)
fn scale_in_place(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat_index(gid, nwg);
  if (i >= params.n) { return; }
  out[i] = params.s * out[i];
}

// out = silu(a) = a · sigmoid(a)
@compute @workgroup_size(WG_X)
fn silu(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat_index(gid, nwg);
  if (i >= params.n) { return; }
  let x = a[i];
  out[i] = x * sigmoid(x);
}

// out = dy · silu'(x)          a: x, b: dy
@compute @workgroup_size(WG_X)
fn silu_backward(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat_index(gid, nwg);
  if (i >= params.n) { return; }
  out[i] = b[i] * silu_grad(a[i]);
}

// out = gelu(a)     (tanh or erf form by GELU_ERF)
@compute @workgroup_size(WG_X)
fn gelu(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat_index(gid, nwg);
  if (i >= params.n) { return; }
  out[i] = gelu_f32(a[i]);
}

// out = dy · gelu'(x)          a: x, b: dy
@compute @workgroup_size(WG_X)
fn gelu_backward(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat_index(gid, nwg);
  if (i >= params.n) { return; }
  out[i] = b[i] * gelu_grad(a[i]);
}

// out = silu(gate) · up        a: gate, b: up   (also dUp = silu(gate) · dy with b: dy)
@compute @workgroup_size(WG_X)
fn swiglu(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat_index(gid, nwg);
  if (i >= params.n) { return; }
  let g = a[i];
  out[i] = g * sigmoid(g) * b[i];
}

// out = dGate = dy · up · silu'(gate)    a: gate, b: up, c: dy
@compute @workgroup_size(WG_X)
fn swiglu_backward_gate(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat_index(gid, nwg);
  if (i >= params.n) { return; }
  out[i] = c[i] * b[i] * silu_grad(a[i]);
}
