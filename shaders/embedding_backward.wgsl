// Embedding backward (scatter-add) without float atomics, deterministic. Bindings and
// `params` are generated from the declaration in web/src/gpu/ops/embedding.ts.
//   ids:    (T) i32 token ids (clamped to [0, V) like the forward)
//   dy:     (T, C)
//   dtable: (V, C), zeroed by the host before these dispatches
//   links:  (T, 2) i32 scratch: [next token with the same id or −1, 1 if first occurrence]
//   params.T: u32, params.C: u32, params.V: u32
// Pass 1 (embedding_links, one thread per token) chains the tokens of each id in increasing t;
// pass 2 (embedding_backward, one thread per (t, c)) lets the first token of each chain walk it
// and write the sum, so every dtable element has one writer and a fixed summation order.
// Pass 1 is O(T) per token (O(T²) in all, integer compares only).

fn clamped_id(t: u32) -> i32 {
  return clamp(ids[t], 0i, i32(params.V) - 1i);
}

@compute @workgroup_size(WG_X)
fn embedding_links(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let t = gid.x + gid.y * nwg.x * WG_X;
  if (t >= params.T) { return; }
  let id = clamped_id(t);
  var first = 1i;
  for (var u = 0u; u < t; u++) {
    if (clamped_id(u) == id) { first = 0i; break; }
  }
  var next = -1i;
  for (var u = t + 1u; u < params.T; u++) {
    if (clamped_id(u) == id) { next = i32(u); break; }
  }
  links[2u * t] = next;
  links[2u * t + 1u] = first;
}

@compute @workgroup_size(WG_X)
fn embedding_backward(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG_X;
  if (i >= params.T * params.C) { return; }
  let t = i / params.C;
  if (links[2u * t + 1u] == 0i) { return; }
  let c = i % params.C;
  var s = 0.0;
  var u = i32(t);
  loop {
    s += dy[u32(u) * params.C + c];
    u = links[2u * u32(u)];
    if (u < 0i) { break; }
  }
  dtable[u32(clamped_id(t)) * params.C + c] = s;
}
