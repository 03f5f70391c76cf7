// Causal grouped-query attention for a few query rows against a long KV cache (decode, T = 1..few).
// The kv length is split across the threads of one workgroup: per tile of WG_X keys, thread i
// scores key j0 + i for every row, the workgroup agrees on the running max, then each thread
// accumulates its own output dims over the tile. Long caches are also split across workgroups
// (grid z, `chunk` keys each, flash-decoding): each split writes its own normalised out and lse,
// merged by attention_combine.wgsl. Bindings, `params` and constants are generated from
// web/src/gpu/ops/attention.ts.
//   q: (T, Hq, D)    k, v: (S, Hkv, D) f32, or f16 (element type T) for an f16 KV cache, rows [0, kvLen) valid
//   out: (splits, T, Hq, D)    lse: (splits, Hq, T)    (splits = 1: the final result)
// Variant constants: HEAD_DIM = D; ROWS query rows per workgroup; thread i owns output dims
// d = i + WG_X·c (c < DPT).
// Grid: (⌈T·G / ROWS⌉, Hkv, splits), query rows ρ = t·G + g of kv head kvh (head h = kvh·G + g).
// A split that sees no key of a row writes out = 0 and lse = MASKED (weight 0 in the merge).

const MASKED: f32 = -3.0e38f; // a masked score; below any real scaled score

var<workgroup> q_s: array<f32, ROWS * HEAD_DIM>; // (ROWS, D) this workgroup's query rows
var<workgroup> s_s: array<f32, ROWS * WG_X>; //    (ROWS, WG_X) scores of the tile; then partial sums
var<workgroup> p_s: array<f32, ROWS * WG_X>; //    (ROWS, WG_X) exp(score − max) of the tile

// #include "attention_causal"

@compute @workgroup_size(WG_X)
fn attn_decode(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3u) {
  let G = params.G;
  let kvh = wid.y;
  let rows = params.T * G;
  let row0 = wid.x * ROWS;
  // Workgroup-uniform key range of this split: the block's last row sees the most keys.
  let kbeg = wid.z * params.chunk;
  let kend = min(key_end((min(row0 + ROWS, rows) - 1u) / G), kbeg + params.chunk);

  for (var e = tid; e < ROWS * HEAD_DIM; e += WG_X) {
    let rr = min(row0 + e / HEAD_DIM, rows - 1u); // rows past the end repeat the last one
    q_s[e] = q[((rr / G) * params.Hq + kvh * G + rr % G) * HEAD_DIM + e % HEAD_DIM];
  }
  var row_end: array<u32, ROWS>;
  for (var r = 0u; r < ROWS; r++) { row_end[r] = key_end(min(row0 + r, rows - 1u) / G); }

  var m: array<f32, ROWS>; //    running max per row (the same in every thread)
  var lsum: array<f32, ROWS>; // this thread's share of Σ exp(score − m)
  var o: array<f32, ROWS * DPT>; // (ROWS, DPT) running Σ exp(score − m)·v over this thread's dims
  for (var r = 0u; r < ROWS; r++) { m[r] = MASKED; }
  workgroupBarrier(); // q_s written

  var ntiles = 0u;
  if (kend > kbeg) { ntiles = (kend - kbeg + WG_X - 1u) / WG_X; }
  for (var kt = 0u; kt < ntiles; kt++) {
    let j0 = kbeg + kt * WG_X;
    let j = j0 + tid;
    if (j < kend) {
      let kb = (j * params.Hkv + kvh) * HEAD_DIM;
      for (var r = 0u; r < ROWS; r++) {
        var dot = 0.0f;
        for (var d = 0u; d < HEAD_DIM; d++) { dot += q_s[r * HEAD_DIM + d] * f32(k[kb + d]); }
        s_s[r * WG_X + tid] = select(MASKED, dot * params.scale, j < row_end[r]);
      }
    } else {
      for (var r = 0u; r < ROWS; r++) { s_s[r * WG_X + tid] = MASKED; }
    }
    workgroupBarrier();
    for (var r = 0u; r < ROWS; r++) {
      var mt = m[r];
      for (var i = 0u; i < WG_X; i++) { mt = max(mt, s_s[r * WG_X + i]); }
      let alpha = exp(m[r] - mt);
      m[r] = mt;
      lsum[r] *= alpha;
      for (var c = 0u; c < DPT; c++) { o[r * DPT + c] *= alpha; }
      let s = s_s[r * WG_X + tid];
      let p = select(0.0f, exp(s - mt), s > MASKED);
      p_s[r * WG_X + tid] = p;
      lsum[r] += p;
    }
    workgroupBarrier();
    // Accumulate this thread's dims over the tile's keys (v reads are contiguous across threads).
    let n = min(WG_X, kend - j0);
    for (var i = 0u; i < n; i++) {
      let vb = ((j0 + i) * params.Hkv + kvh) * HEAD_DIM;
      for (var c = 0u; c < DPT; c++) {
        let d = tid + WG_X * c;
        if (d < HEAD_DIM) {
          let vx = f32(v[vb + d]);
          for (var r = 0u; r < ROWS; r++) { o[r * DPT + c] += p_s[r * WG_X + i] * vx; }
        }
      }
    }
  }

  // Sum the per-thread shares of l. s_s is free: every thread passed the last tile's second barrier.
  for (var r = 0u; r < ROWS; r++) { s_s[r * WG_X + tid] = lsum[r]; }
  workgroupBarrier();
  for (var r = 0u; r < ROWS; r++) {
    let rho = row0 + r;
    if (rho >= rows) { break; }
    var l = 0.0f;
    for (var i = 0u; i < WG_X; i++) { l += s_s[r * WG_X + i]; }
    let t = rho / G;
    let h = kvh * G + rho % G;
    let seen = l > 0.0f; // false only for a split holding none of this row's keys
    let inv = select(0.0f, 1.0f / l, seen);
    let ob = wid.z * params.T * params.Hq * HEAD_DIM;
    for (var c = 0u; c < DPT; c++) {
      let d = tid + WG_X * c;
      if (d < HEAD_DIM) { out[ob + (t * params.Hq + h) * HEAD_DIM + d] = o[r * DPT + c] * inv; }
    }
    if (tid == 0u) { lse[wid.z * params.Hq * params.T + h * params.T + t] = select(MASKED, m[r] + log(l), seen); }
  }
}
