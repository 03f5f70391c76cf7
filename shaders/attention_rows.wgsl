// Causal grouped-query attention forward for software adapters (SwiftShader runs workgroups on CPU
// threads: barriers are costly, workgroup memory costs compile time, and the CPU caches do the
// tiling). One thread per query row (t, h) walks its keys with an online softmax in registers;
// no workgroup memory, no barriers. Bindings and `params` are generated from
// web/src/gpu/ops/attention.ts (the same declaration as attention_decode.wgsl).
//   q: (T, Hq, D)    k, v: (S, Hkv, D) f32, or f16 (element type T) for an f16 KV cache, rows [0, kvLen) valid
//   out: (splits, T, Hq, D)    lse: (splits, Hq, T)    (splits = 1: the final result)
// Grid (flattened): T·Hq threads per split, split z = wid.z taking keys [z·chunk, (z+1)·chunk);
// splits are merged by attention_combine.wgsl. A split that sees none of a row's keys writes
// out = 0 and lse = MASKED. Variant constant: HEAD_DIM = D.

const MASKED: f32 = -3.0e38f; // "no key seen": weight 0 in the merge

// #include "attention_causal"

@compute @workgroup_size(WG_X)
fn attn_rows(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(workgroup_id) wid: vec3u) {
  let idx = gid.x + gid.y * nwg.x * WG_X; // t·Hq + h: neighbouring threads share a kv head
  if (idx >= params.T * params.Hq) { return; }
  let t = idx / params.Hq;
  let h = idx % params.Hq;
  let kvh = h / params.G;
  let row_end = key_end(t);
  let kbeg = wid.z * params.chunk;
  let kend = min(row_end, kbeg + params.chunk);

  var qr: array<f32, HEAD_DIM>;
  for (var d = 0u; d < HEAD_DIM; d++) { qr[d] = q[idx * HEAD_DIM + d] * params.scale; }
  var o: array<f32, HEAD_DIM>; // Σ exp(s − m)·v
  var m = MASKED;
  var l = 0.0f;
  for (var j = kbeg; j < kend; j++) {
    let kb = (j * params.Hkv + kvh) * HEAD_DIM;
    var s = 0.0f;
    for (var d = 0u; d < HEAD_DIM; d++) { s += qr[d] * f32(k[kb + d]); }
    // One exp per key: rescale the running sums only when the max grows.
    var p = 1.0f;
    if (s > m) {
      let alpha = exp(m - s);
      l *= alpha;
      for (var d = 0u; d < HEAD_DIM; d++) { o[d] *= alpha; }
      m = s;
    } else {
      p = exp(s - m);
    }
    l += p;
    for (var d = 0u; d < HEAD_DIM; d++) { o[d] += p * f32(v[kb + d]); }
  }

  let seen = l > 0.0f;
  let inv = select(0.0f, 1.0f / l, seen);
  let ob = wid.z * params.T * params.Hq * HEAD_DIM + idx * HEAD_DIM;
  for (var d = 0u; d < HEAD_DIM; d++) { out[ob + d] = o[d] * inv; }
  lse[wid.z * params.Hq * params.T + h * params.T + t] = select(MASKED, m + log(l), seen);
}
