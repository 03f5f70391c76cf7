// Element access to a weight matrix kept in its file encoding (issue #10): f32, f16, bf16 and the
// GGUF blocks q8_0, q4_0, q4_k, q5_k, q6_k, decoded to f32 one element at a time. Needs the
// kernel's binding `w: array<u32>` (the tensor's bytes, padded to 4) and the variant constant
// WTYPE (one of the W_* codes below, from `weightType` in web/src/gpu/ops/weight-decode.ts).
// A (rows, K) matrix of a block type holds K / block elements' blocks per row, rows never share
// a block (ggml-common.h layouts; the arithmetic is that of web/src/gpu/cpu/dequant.ts):
//   q8_0  34 B / 32:  f16 d, i8 q[32]                                    x = d·q
//   q4_0  18 B / 32:  f16 d, u8 qs[16] (lo nibble: 0..15, hi: 16..31)     x = d·(q − 8)
//   q4_k 144 B / 256: f16 d, f16 dmin, u8 scales[12], u8 qs[128]          x = d·sc·q − dmin·m
//   q5_k 176 B / 256: f16 d, f16 dmin, u8 scales[12], u8 qh[32], u8 qs[128]
//   q6_k 210 B / 256: u8 ql[128], u8 qh[64], i8 scales[16], f16 d        x = d·sc·(q − 32)
// Every block and row starts on an even byte, so each f16 lies within one u32 word.

const W_F32: u32 = 0u;
const W_F16: u32 = 1u;
const W_BF16: u32 = 2u;
const W_Q8_0: u32 = 3u;
const W_Q4_0: u32 = 4u;
const W_Q4_K: u32 = 5u;
const W_Q5_K: u32 = 6u;
const W_Q6_K: u32 = 7u;

fn w_byte(b: u32) -> u32 {   // b: byte offset
  return (w[b >> 2u] >> ((b & 3u) << 3u)) & 0xffu;
}

fn w_half(b: u32) -> f32 {   // b: even byte offset of an f16
  return unpack2x16float(w[b >> 2u] >> ((b & 2u) << 3u)).x;
}

// K-quant 6-bit scale and min of sub-block j (0..7) from the 12 scale bytes at byte s
// (llama.cpp get_scale_min_k4).
fn w_scale_min_k4(s: u32, j: u32) -> vec2f {
  if (j < 4u) {
    return vec2f(f32(w_byte(s + j) & 63u), f32(w_byte(s + j + 4u) & 63u));
  }
  let sc = (w_byte(s + j + 4u) & 15u) | ((w_byte(s + j - 4u) >> 6u) << 4u);
  let m = (w_byte(s + j + 4u) >> 4u) | ((w_byte(s + j) >> 6u) << 4u);
  return vec2f(f32(sc), f32(m));
}

// Element k of row `row` of a (rows, K) weight matrix of type WTYPE.
fn w_at(row: u32, K: u32, k: u32) -> f32 {
  switch WTYPE {
    case W_F32: {
      return bitcast<f32>(w[row * K + k]);
    }
    case W_F16: {
      let i = row * K + k;
      return unpack2x16float(w[i >> 1u] >> ((i & 1u) << 4u)).x;
    }
    case W_BF16: {
      let i = row * K + k;
      return bitcast<f32>(((w[i >> 1u] >> ((i & 1u) << 4u)) & 0xffffu) << 16u);
    }
    case W_Q8_0: {
      let b = (row * (K / 32u) + k / 32u) * 34u;
      let q = i32(w_byte(b + 2u + k % 32u) << 24u) >> 24u;
      return w_half(b) * f32(q);
    }
    case W_Q4_0: {
      let b = (row * (K / 32u) + k / 32u) * 18u;
      let j = k % 32u;
      let q = (w_byte(b + 2u + j % 16u) >> ((j / 16u) * 4u)) & 15u;
      return w_half(b) * (f32(q) - 8.0);
    }
    case W_Q4_K: {
      let b = (row * (K / 256u) + k / 256u) * 144u;
      let j = k % 256u;
      let sm = w_scale_min_k4(b + 4u, j / 32u);
      let q = (w_byte(b + 16u + (j / 64u) * 32u + j % 32u) >> (((j / 32u) & 1u) * 4u)) & 15u;
      return w_half(b) * sm.x * f32(q) - w_half(b + 2u) * sm.y;
    }
    case W_Q5_K: {
      let b = (row * (K / 256u) + k / 256u) * 176u;
      let j = k % 256u;
      let sm = w_scale_min_k4(b + 4u, j / 32u);
      let lo = (w_byte(b + 48u + (j / 64u) * 32u + j % 32u) >> (((j / 32u) & 1u) * 4u)) & 15u;
      let hi = (w_byte(b + 16u + j % 32u) >> (j / 32u)) & 1u;
      return w_half(b) * sm.x * f32(lo | (hi << 4u)) - w_half(b + 2u) * sm.y;
    }
    case W_Q6_K: {
      let b = (row * (K / 256u) + k / 256u) * 210u;
      let j = k % 256u;
      let n = j / 128u;          // half of the block
      let g = (j % 128u) / 32u;  // quarter of the half
      let l = j % 32u;
      let lo = (w_byte(b + n * 64u + (g & 1u) * 32u + l) >> ((g / 2u) * 4u)) & 15u;
      let hi = (w_byte(b + 128u + n * 32u + l) >> (2u * g)) & 3u;
      let sc = i32(w_byte(b + 192u + n * 8u + l / 16u + 2u * g) << 24u) >> 24u;
      return w_half(b + 208u) * f32(sc) * (f32(lo | (hi << 4u)) - 32.0);
    }
    default: {
      return 0.0;
    }
  }
}
