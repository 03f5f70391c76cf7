// Rotary position embedding, rotate-half form (Hugging Face Llama). Bindings and `params` are
// generated from the declaration in web/src/gpu/ops/rope.ts.
//   x, out: (T, H, D) f32    positions: (T) i32    inv_freq: (D/2) f32, computed on the host
// One thread per (t, h, i), i < D/2: it writes out[t, h, i] and out[t, h, i + D/2].
//
// cos/sin: WGSL's builtins only promise 2^-11 absolute error inside [-π, π] and nothing outside,
// while angles reach thousands of radians (position × inv_freq[0] = position). So we reduce the
// f32 angle by π/2 exactly (Cody–Waite: π/2 split into pieces of ≤ 8 significant bits, so
// k·piece is exact for |k| < 2^16, i.e. |angle| < 1.0e5 rad) and evaluate the Cephes sinf/cosf
// minimax polynomials on [-π/4, π/4]. Result: within ~3e-7 of the exact cos/sin of the f32 angle,
// on every device.

const TWO_OVER_PI: f32 = 0.63661977236758134f;
// π/2 = PIO2_1 + … + PIO2_6 (the first five have ≤ 8 significant bits; the rest is < 1e-22).
const PIO2_1: f32 = 1.5703125f;
const PIO2_2: f32 = 4.825592041015625e-4f;
const PIO2_3: f32 = 1.2665987014770508e-6f;
const PIO2_4: f32 = 9.89530235528946e-10f;
const PIO2_5: f32 = 2.5579538487363607e-12f;
const PIO2_6: f32 = 5.390302953474238e-15f;

// (cos a, sin a) for an f32 angle a, |a| < 1.0e5.
fn cos_sin(a: f32) -> vec2f {
  let k = round(a * TWO_OVER_PI);
  var r = a - k * PIO2_1;
  r = r - k * PIO2_2;
  r = r - k * PIO2_3;
  r = r - k * PIO2_4;
  r = r - k * PIO2_5;
  r = r - k * PIO2_6;
  let z = r * r;
  let s = r + r * z * (-1.6666654611e-1f + z * (8.3321608736e-3f + z * -1.9515295891e-4f));
  let c = 1.0f - 0.5f * z + z * z * (4.166664568298827e-2f + z * (-1.388731625493765e-3f + z * 2.443315711809948e-5f));
  // a = r + q·π/2: rotate (cos r, sin r) by the quadrant q = k mod 4 (two's complement & 3 is mod 4).
  switch (i32(k) & 3) {
    case 0: { return vec2f(c, s); }
    case 1: { return vec2f(-s, c); }
    case 2: { return vec2f(-c, -s); }
    default: { return vec2f(s, -c); }
  }
}

@compute @workgroup_size(WG_X)
fn rope(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let idx = gid.x + gid.y * nwg.x * WG_X;
  if (idx >= params.n) { return; }
  let half = params.half;
  let i = idx % half;
  let th = idx / half;                 // t·H + h
  let t = th / params.H;
  // One f32 product, as HF's f32 (inv_freq ⊗ positions) matmul.
  let cs = cos_sin(f32(positions[t]) * inv_freq[i]);
  let sn = select(cs.y, -cs.y, params.inverse != 0u);
  let base = th * 2u * half;
  let x1 = x[base + i];
  let x2 = x[base + i + half];
  out[base + i] = x1 * cs.x - x2 * sn;
  out[base + i + half] = x2 * cs.x + x1 * sn;
}
