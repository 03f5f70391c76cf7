// MoE dispatch: stable counting sort of the n = T·k (token, choice) slots by expert, in three
// passes that share one binding set (generated from the declarations in web/src/gpu/ops/moe.ts).
// Slots are cut into chunks of WG_X; no atomics, so the result is the same on every device.
//   experts: i32 (n)            expert of slot s (clamped to [0, E))
//   counts:  u32 (E, nChunks)   pass 1: slots of expert e in chunk c; pass 2: their first row
//   order:   i32 (n)            order[r] = slot in row r (expert-major, slot-ascending)
//   slotRow: i32 (n)            inverse of order
//   offsets: i32 (E + 1)        rows of expert e are [offsets[e], offsets[e+1])

var<workgroup> tile: array<u32, WG_X>; // experts of this chunk's slots
var<workgroup> sums: array<u32, WG_X>; // scan: per-thread segment sums

fn expert_at(s: u32) -> u32 {
  return u32(clamp(experts[s], 0i, i32(params.E) - 1i));
}

// Loads this chunk's experts into `tile`; returns how many slots the chunk holds.
fn load_chunk(c: u32, lid: u32) -> u32 {
  let base = c * WG_X;
  let len = min(WG_X, params.n - base);
  if (lid < len) { tile[lid] = expert_at(base + lid); }
  workgroupBarrier();
  return len;
}

// Pass 1, one workgroup per chunk: counts[e, c] for every expert (zero where absent).
@compute @workgroup_size(WG_X)
fn dispatch_count(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let c = wid.x + wid.y * nwg.x;
  if (c >= params.nChunks) { return; }
  let len = load_chunk(c, lid);
  for (var e = lid; e < params.E; e += WG_X) {
    var cnt = 0u;
    for (var i = 0u; i < len; i++) { cnt += select(0u, 1u, tile[i] == e); }
    counts[e * params.nChunks + c] = cnt;
  }
}

// Pass 2, one workgroup: exclusive scan of counts in (expert, chunk) order, in place, so
// counts[e, c] becomes the first row of expert e's slots from chunk c; offsets[e] = counts[e, 0].
@compute @workgroup_size(WG_X)
fn dispatch_scan(@builtin(local_invocation_index) lid: u32) {
  let len = params.E * params.nChunks;
  let per = (len + WG_X - 1u) / WG_X;
  let lo = min(lid * per, len);
  let hi = min(lo + per, len);
  var total = 0u;
  for (var i = lo; i < hi; i++) { total += counts[i]; }
  sums[lid] = total;
  workgroupBarrier();
  // Hillis–Steele inclusive scan of the WG_X segment sums.
  for (var d = 1u; d < WG_X; d = d * 2u) {
    var v = sums[lid];
    if (lid >= d) { v += sums[lid - d]; }
    workgroupBarrier();
    sums[lid] = v;
    workgroupBarrier();
  }
  var run = sums[lid] - total;
  for (var i = lo; i < hi; i++) {
    let cnt = counts[i];
    counts[i] = run;
    if (i % params.nChunks == 0u) { offsets[i / params.nChunks] = i32(run); }
    run += cnt;
  }
  if (lid == 0u) { offsets[params.E] = i32(params.n); }
}

// Pass 3, one workgroup per chunk: each slot's row = first row of (its expert, this chunk)
// + number of earlier slots in the chunk with the same expert (keeps the sort stable).
@compute @workgroup_size(WG_X)
fn dispatch_scatter(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let c = wid.x + wid.y * nwg.x;
  if (c >= params.nChunks) { return; }
  let len = load_chunk(c, lid);
  if (lid >= len) { return; }
  let e = tile[lid];
  var rank = 0u;
  for (var i = 0u; i < lid; i++) { rank += select(0u, 1u, tile[i] == e); }
  let r = counts[e * params.nChunks + c] + rank;
  let s = c * WG_X + lid;
  order[r] = i32(s);
  slotRow[s] = i32(r);
}
