// Four consecutive weights at a time, for the matmul kernels (shaders/matmul_quant.wgsl): the
// element decoder of lib/weight_decode.wgsl does one value per call; here the scales of a unit are
// decoded once (w_unit_ab) and each call decodes the 4 quants of one u32 word. Needs the binding
// `w: array<u32>`, the variant constants WTYPE (a W_* code) and UNIT (32 for the GGUF blocks: a
// q8_0/q4_0 block or a 32-value sub-block of a K-quant block; 4 for f32/f16/bf16).
//   w_unit4(row, K, u, j): values 4j..4j+3 of unit u of row `row` of a (rows, K) matrix,
//   j in [0, UNIT / 4); for f32/f16/bf16 values past K read as 0 (K need not be a multiple of 4).

// #include "weight_decode"

// The 4 bytes at byte offset b (even: every block and row starts on an even byte, so a 4-byte
// group straddles at most two words; the buffer is padded to 4 bytes, so the second word exists).
fn w_word(b: u32) -> u32 {
  let i = b >> 2u;
  if ((b & 2u) == 0u) { return w[i]; }
  return (w[i] >> 16u) | (w[i + 1u] << 16u);
}

// The 4 bytes of v as signed int8 values.
fn w_i8x4(v: u32) -> vec4f {
  let s = bitcast<i32>(v);
  return vec4f(f32(extractBits(s, 0u, 8u)), f32(extractBits(s, 8u, 8u)), f32(extractBits(s, 16u, 8u)), f32(extractBits(s, 24u, 8u)));
}

// The 4 nibbles at bit `sh` (0: low, 4: high) of each byte of v.
fn w_nib4(v: u32, sh: u32) -> vec4f {
  return vec4f(f32((v >> sh) & 15u), f32((v >> (sh + 8u)) & 15u), f32((v >> (sh + 16u)) & 15u), f32((v >> (sh + 24u)) & 15u));
}

// Bits [sh, sh + width) of each byte of v.
fn w_bits4(v: u32, sh: u32, mask: u32) -> vec4f {
  return vec4f(f32((v >> sh) & mask), f32((v >> (sh + 8u)) & mask), f32((v >> (sh + 16u)) & mask), f32((v >> (sh + 24u)) & mask));
}

fn w_elem_or0(row: u32, K: u32, k: u32) -> f32 {
  if (k >= K) { return 0.0; }
  return w_at(row, K, k);
}

// The scales of unit u, decoded once per unit (a row's units share nothing): the values of word j
// are a·q − b with (a, b) = w_scale_j(w_unit_ab(…), j) and q = w_unit_q4(…, j).
//   q8_0 (d, 0)   q4_0 (d, 8d)   q4_k/q5_k (d·sc, dmin·m)   f32/f16/bf16 (1, 0)
//   q6_k (d·sc of values 0..15, d·sc of values 16..31): w_scale_j picks one and b = 32·a
fn w_unit_ab(row: u32, K: u32, u: u32) -> vec2f {
  switch WTYPE {
    case W_Q8_0: {
      return vec2f(w_half((row * (K / 32u) + u) * 34u), 0.0);
    }
    case W_Q4_0: {
      let d = w_half((row * (K / 32u) + u) * 18u);
      return vec2f(d, 8.0 * d);
    }
    case W_Q4_K, W_Q5_K: {
      let b = (row * (K / 256u) + u / 8u) * select(176u, 144u, WTYPE == W_Q4_K); // a multiple of 4
      let dm = unpack2x16float(w[b >> 2u]);
      let sm = w_scale_min_k4(b + 4u, u & 7u);
      return vec2f(dm.x * sm.x, dm.y * sm.y);
    }
    case W_Q6_K: {
      let s = u & 7u;
      let b = (row * (K / 256u) + u / 8u) * 210u; // even
      let d = w_half(b + 208u);
      let sc = b + 192u + 8u * (s >> 2u) + 2u * (s & 3u); // this unit's two int8 scales
      return vec2f(d * f32(i32(w_byte(sc) << 24u) >> 24u), d * f32(i32(w_byte(sc + 1u) << 24u) >> 24u));
    }
    default: {
      return vec2f(1.0, 0.0);
    }
  }
}

// (a, b) of word j of a unit whose scales are ab.
fn w_scale_j(ab: vec2f, j: u32) -> vec2f {
  if (WTYPE == W_Q6_K) {
    let a = select(ab.x, ab.y, j >= 4u);
    return vec2f(a, 32.0 * a);
  }
  return ab;
}

// The quants of word j of unit u as integers (before scale and offset); the values themselves
// for f32/f16/bf16.
fn w_unit_q4(row: u32, K: u32, u: u32, j: u32) -> vec4f {
  switch WTYPE {
    case W_Q8_0: {
      return w_i8x4(w_word((row * (K / 32u) + u) * 34u + 2u + 4u * j));
    }
    case W_Q4_0: {
      return w_nib4(w_word((row * (K / 32u) + u) * 18u + 2u + 4u * (j & 3u)), (j >> 2u) * 4u);
    }
    case W_Q4_K: {
      let s = u & 7u;
      let b = (row * (K / 256u) + u / 8u) * 144u;
      return w_nib4(w[(b + 16u + (s >> 1u) * 32u + 4u * j) >> 2u], (s & 1u) * 4u);
    }
    case W_Q5_K: {
      let s = u & 7u;
      let b = (row * (K / 256u) + u / 8u) * 176u;
      let lo = w_nib4(w[(b + 48u + (s >> 1u) * 32u + 4u * j) >> 2u], (s & 1u) * 4u);
      return lo + 16.0 * w_bits4(w[(b + 16u + 4u * j) >> 2u], s, 1u);
    }
    case W_Q6_K: {
      let s = u & 7u;
      let b = (row * (K / 256u) + u / 8u) * 210u;
      let h = s >> 2u; // half of the block
      let g = s & 3u;  // quarter of the half
      let lo = w_nib4(w_word(b + 64u * h + 32u * (g & 1u) + 4u * j), (g >> 1u) * 4u);
      return lo + 16.0 * w_bits4(w_word(b + 128u + 32u * h + 4u * j), 2u * g, 3u);
    }
    default: { // f32, f16, bf16: a unit is 4 elements
      let k = 4u * u;
      return vec4f(w_elem_or0(row, K, k), w_elem_or0(row, K, k + 1u), w_elem_or0(row, K, k + 2u), w_elem_or0(row, K, k + 3u));
    }
  }
}

// Values 4j..4j+3 of unit u (the tiled kernel and dequant decode word by word).
fn w_unit4(row: u32, K: u32, u: u32, j: u32) -> vec4f {
  let s = w_scale_j(w_unit_ab(row, K, u), j);
  return s.x * w_unit_q4(row, K, u, j) - vec4f(s.y);
}
