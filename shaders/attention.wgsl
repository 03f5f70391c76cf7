// Causal grouped-query attention, prefill: flash-attention forward (online softmax over K/V tiles
// held in workgroup memory). Bindings, `params` and the tile constants are generated from the
// declaration and the variant builder in web/src/gpu/ops/attention.ts.
//   q, out: (T, Hq, D)    k, v: (S, Hkv, D) f32, or f16 (element type T) for an f16 KV cache, rows [0, kvLen) valid    lse: (Hq, T)
// Variant constants: HEAD_DIM = D; LANES threads share one query row, lane l owning dims
// d = l + LANES·c (c < DPT); DP = LANES·DPT ≥ D is the zero-padded row length and RS = DP + 1
// the row stride in workgroup memory (odd, so the rows a warp reads at once sit in different banks);
// BQ = WG_X / LANES query rows per workgroup; BK keys per tile.
//
// Grid: (⌈T·G / BQ⌉, Hkv), G = Hq / Hkv. The query rows of one kv head are ρ = t·G + g (head
// h = kvh·G + g), so the G heads that share a kv head share its K/V tiles (HF repeat_kv).
// Query t sits at absolute position qOffset + t and sees keys j < kvLen with j ≤ qOffset + t
// (causal) or all j < kvLen.

const MASKED: f32 = -3.0e38f; // a masked score; below any real scaled score

var<workgroup> q_s: array<f32, BQ * RS>; // (BQ, RS) this block's query rows, zero-padded
var<workgroup> s_s: array<f32, BQ * BK>; // (BQ, BK) scaled scores of the tile, MASKED where hidden

// #include "attention_causal"
// #include "attention_kv_tile"

@compute @workgroup_size(WG_X)
fn attn_prefill(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3u) {
  let G = params.G;
  let kvh = wid.y;
  let rows = params.T * G;
  let row0 = wid.x * BQ;
  let r = tid / LANES;
  let lane = tid % LANES;
  // Rows past the end repeat the last row (keeps the math finite) and write nothing.
  let rho = min(row0 + r, rows - 1u);
  let t = rho / G;
  let h = kvh * G + rho % G;
  let row_end = key_end(t);
  // Workgroup-uniform: the block's last row sees the most keys.
  let block_end = key_end((min(row0 + BQ, rows) - 1u) / G);

  for (var e = tid; e < BQ * DP; e += WG_X) {
    let d = e % DP;
    let at = (e / DP) * RS + d;
    let rr = min(row0 + e / DP, rows - 1u);
    var x = 0.0f;
    if (d < HEAD_DIM) { x = q[((rr / G) * params.Hq + kvh * G + rr % G) * HEAD_DIM + d]; }
    q_s[at] = x;
  }

  var m = MASKED; // running max of the row's scores
  var l = 0.0f; //   running sum of exp(score − m)
  var o: array<f32, DPT>; // running Σ exp(score − m)·v over this lane's dims
  let ntiles = (block_end + BK - 1u) / BK;
  for (var kt = 0u; kt < ntiles; kt++) {
    let j0 = kt * BK;
    workgroupBarrier(); // every thread is done with the previous tile (and q_s is written)
    load_kv_tile(tid, kvh, j0, block_end);
    workgroupBarrier();
    for (var jj = lane; jj < BK; jj += LANES) {
      var dot = 0.0f;
      for (var d = 0u; d < HEAD_DIM; d++) { dot += q_s[r * RS + d] * k_s[jj * RS + d]; }
      s_s[r * BK + jj] = select(MASKED, dot * params.scale, j0 + jj < row_end);
    }
    workgroupBarrier();
    // Online softmax; every lane of a row computes the same m and l.
    var mt = m;
    for (var jj = 0u; jj < BK; jj++) { mt = max(mt, s_s[r * BK + jj]); }
    let alpha = exp(m - mt); // 0 on the first visible tile (m = MASKED), 1 while nothing is visible
    l *= alpha;
    for (var c = 0u; c < DPT; c++) { o[c] *= alpha; }
    for (var jj = 0u; jj < BK; jj++) {
      let s = s_s[r * BK + jj];
      if (s > MASKED) {
        let p = exp(s - mt);
        l += p;
        for (var c = 0u; c < DPT; c++) { o[c] += p * v_s[jj * RS + lane + LANES * c]; }
      }
    }
    m = mt;
  }

  // Key 0 is visible to every row (kvLen ≥ 1, checked on the host), so l > 0.
  if (row0 + r < rows) {
    let inv = 1.0f / l;
    for (var c = 0u; c < DPT; c++) {
      let d = lane + LANES * c;
      if (d < HEAD_DIM) { out[(t * params.Hq + h) * HEAD_DIM + d] = o[c] * inv; }
    }
    if (lane == 0u) { lse[h * params.T + t] = m + log(l); }
  }
}
