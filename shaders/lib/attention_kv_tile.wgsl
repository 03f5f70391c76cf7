// The K/V tile of the flash-attention kernels that own a block of query rows (attention.wgsl,
// attention_bwd_dq.wgsl). Needs the bindings k, v: (S, Hkv, D) of f32 or f16 (an f16 KV cache:
// widened here, the tile is f32), `params.Hkv` and the prefill tiling constants HEAD_DIM, DP
// (padded row), RS = DP + 1 (row stride), BK (keys per tile), WG_X.

var<workgroup> k_s: array<f32, BK * RS>; //  (BK, RS) key tile
var<workgroup> v_s: array<f32, BK * RS>; //  (BK, RS) value tile

// Thread `tid` copies its share of keys/values [j0, j0 + BK) of kv head kvh into k_s/v_s;
// keys at or past `block_end` and the padding past HEAD_DIM are zero. No barriers: the caller
// fences the tile on both sides.
fn load_kv_tile(tid: u32, kvh: u32, j0: u32, block_end: u32) {
  for (var e = tid; e < BK * DP; e += WG_X) {
    let j = j0 + e / DP;
    let d = e % DP;
    let at = (e / DP) * RS + d;
    var kx = 0.0f;
    var vx = 0.0f;
    if (j < block_end && d < HEAD_DIM) {
      let i = (j * params.Hkv + kvh) * HEAD_DIM + d;
      kx = f32(k[i]);
      vx = f32(v[i]);
    }
    k_s[at] = kx;
    v_s[at] = vx;
  }
}
