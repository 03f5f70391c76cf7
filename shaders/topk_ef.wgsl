// Top-k pseudo-gradient compression with error feedback, one workgroup per chunk: t = carry + Δ,
// keep the kc largest |t| of the chunk (ties: lower index), code them on the signed b-bit grid
// of the chunk's scale s = max |t|, and carry' = β·(t − sent) for the next round. The math, bit
// for bit, is web/src/gpu/cpu/topk-ef.ts (the CPU twin); bindings and `params` come from
// web/src/gpu/ops/topk-ef.ts.
//   delta, carry: (n) f32          grid: LEVEL[0..top] then T[1..top] (topkEfGrid)
//   next: (n) f32 carry'           sent: (n) f32          codes: (n) u32, q + 1 kept, 0 dropped
//   chunks: (2·nchunks) u32: bits of s, then 1 if the chunk holds a non-finite t
// Only single multiplies, adds and comparisons touch floats; sent goes through workgroup memory
// before t − sent so no multiply-add can be fused across it. Constant: MAX_CHUNK.

var<workgroup> t_s: array<f32, MAX_CHUNK>;
var<workgroup> a_s: array<f32, MAX_CHUNK>;
var<workgroup> sent_s: array<f32, MAX_CHUNK>;
var<workgroup> bad_s: atomic<u32>;

fn not_finite(v: f32) -> bool {
  return (bitcast<u32>(v) & 0x7f800000u) == 0x7f800000u;
}

// Grid: grid1d(nchunks) workgroups of WG_X threads.
@compute @workgroup_size(WG_X)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let j = wid.x + wid.y * nwg.x;
  if (j >= params.nchunks) { return; }
  let lo = j * params.chunk;
  let len = min(params.chunk, params.n - lo);
  let kc = min(params.k, len);
  let top = params.top;
  let beta = bitcast<f32>(params.decay_bits);
  if (lid == 0u) { atomicStore(&bad_s, 0u); }
  workgroupBarrier();
  for (var i = lid; i < len; i += WG_X) {
    let t = carry[lo + i] + delta[lo + i];
    t_s[i] = t;
    a_s[i] = abs(t);
    if (not_finite(t)) { atomicOr(&bad_s, 1u); }
  }
  workgroupBarrier();
  var s = 0.0;
  for (var m = 0u; m < len; m++) { s = max(s, a_s[m]); }
  for (var i = lid; i < len; i += WG_X) {
    let ai = a_s[i];
    var rank = 0u;
    for (var m = 0u; m < len; m++) {
      let am = a_s[m];
      if (am > ai || (am == ai && m < i)) { rank++; }
    }
    var sv = 0.0;
    var code = 0u;
    if (rank < kc) {
      let t = t_s[i];
      var q = 0u;
      if (s > 0.0) {
        for (var m = 1u; m <= top; m++) {
          if (t >= s * grid[top + m]) { q++; }
        }
      }
      sv = s * grid[q];
      code = q + 1u;
    }
    sent_s[i] = sv;
    sent[lo + i] = sv;
    codes[lo + i] = code;
  }
  workgroupBarrier();
  for (var i = lid; i < len; i += WG_X) {
    next[lo + i] = beta * (t_s[i] - sent_s[i]);
  }
  if (lid == 0u) {
    chunks[2u * j] = bitcast<u32>(s);
    chunks[2u * j + 1u] = atomicLoad(&bad_s);
  }
}
