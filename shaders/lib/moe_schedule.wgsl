// GPU-side tile schedule of the grouped expert GEMMs (moe_ffn_up, moe_ffn_down,
// moe_ffn_backward_hidden, moe_ffn_backward_dx). Needs the kernel's `offsets: i32 (E + 1)`
// binding, `params.E`, `params.N` and the row tile BM. Each expert's rows
// [offsets[e], offsets[e+1]) (clamped to [0, N]) are cut into BM-row tiles, numbered in expert
// order; thread 0 finds row tile `tile`, and every thread gets (expert, first row, end row,
// valid), valid = 0 past the last tile. Call from uniform control flow (it holds a barrier).

var<workgroup> sched: array<u32, 4>;       // (expert, first row, end row, valid)

fn schedule(tile: u32, lid: u32) -> array<u32, 4> {
  if (lid == 0u) {
    sched = array<u32, 4>(0u, 0u, 0u, 0u);
    var acc = 0u;
    for (var e = 0u; e < params.E; e++) {
      let lo = u32(clamp(offsets[e], 0i, i32(params.N)));
      let hi = max(u32(clamp(offsets[e + 1u], 0i, i32(params.N))), lo);
      let nt = (hi - lo + BM - 1u) / BM;
      if (tile < acc + nt) {
        sched = array<u32, 4>(e, lo + (tile - acc) * BM, hi, 1u);
        break;
      }
      acc += nt;
    }
  }
  return workgroupUniformLoad(&sched);
}
