// int8 block quantisation (the q8 format, defined in web/src/gpu/cpu/quant.ts, which this must
// match bit for bit). Bindings and `params` come from QUANTIZE / DEQUANTIZE in
// web/src/gpu/ops/quant.ts; both declare x and q read_write because the two entry points share
// this module (one writes q, the other x).
//   x: (n) f32
//   q: q8 words, block j = words [j·(1 + block/4), (j + 1)·(1 + block/4)):
//      word 0 = bitcast f32 scale, then block/4 words of 4 int8 each (byte 0 = lowest element)
// Constants: INV_127_BITS (bits of f32(1/127)), MIN_ABSMAX_BITS (bits of 2^-100).
// Only single multiplies and comparisons touch floats, so results do not depend on whether a
// device fuses multiply-adds or how precise its division is.

fn flat_index(gid: vec3u, nwg: vec3u) -> u32 {
  return gid.x + gid.y * nwg.x * WG_X;
}

// |q| = #{k in 0..126 : ax > f32((k + 0.5) · s)}, by bisection: round to nearest, ties toward 0.
fn quant_mag(ax: f32, s: f32) -> i32 {
  var q = 0i;
  for (var step = 64i; step >= 1i; step = step / 2i) {
    if (q + step <= 127i && ax > (f32(q + step) - 0.5) * s) { q += step; }
  }
  return q;
}

// One thread per block. Grid: grid1d(ceil(nblocks / WG_X)).
@compute @workgroup_size(WG_X)
fn quantize(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let j = flat_index(gid, nwg);
  if (j >= params.nblocks) { return; }
  let block = params.block;
  let words = block / 4u;
  let lo = j * block;
  let hi = min(params.n, lo + block);
  let base = j * (1u + words);
  var absmax = 0.0;
  for (var i = lo; i < hi; i++) { absmax = max(absmax, abs(x[i])); }
  if (absmax < bitcast<f32>(MIN_ABSMAX_BITS)) {
    for (var w = 0u; w <= words; w++) { q[base + w] = 0u; }
    return;
  }
  let s = absmax * bitcast<f32>(INV_127_BITS);
  q[base] = bitcast<u32>(s);
  for (var w = 0u; w < words; w++) {
    var word = 0u;
    for (var b = 0u; b < 4u; b++) {
      let i = lo + w * 4u + b;
      if (i < hi) {
        let xi = x[i];
        let m = quant_mag(abs(xi), s);
        let v = select(m, -m, xi < 0.0);
        word |= (bitcast<u32>(v) & 0xffu) << (8u * b);
      }
    }
    q[base + 1u + w] = word;
  }
}

// One thread per element: x = f32(q) · scale. Grid: grid1d(ceil(n / WG_X)).
@compute @workgroup_size(WG_X)
fn dequantize(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat_index(gid, nwg);
  if (i >= params.n) { return; }
  let block = params.block;
  let j = i / block;
  let r = i - j * block;
  let base = j * (1u + block / 4u);
  let word = bitcast<i32>(q[base + 1u + r / 4u]);
  let v = extractBits(word, 8u * (r % 4u), 8u); // sign-extended
  x[i] = f32(v) * bitcast<f32>(q[base]);
}
