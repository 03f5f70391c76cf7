// Embedding lookup (gather) from a table kept in its file encoding: f32, f16, bf16 or a GGUF block
// type (decoded by shaders/lib/weight_decode.wgsl, WTYPE from the variant), and from one row part
// of a table split across bindings (web/src/gpu/split.ts). Bindings and `params` are generated
// from the declaration in web/src/gpu/ops/embedding.ts.
//   ids: (T) i32 token ids, validated on the host; out-of-range ids are clamped to [0, V)
//   w:   rows [row0, row0 + rows) of the (V, C) table, as u32 words of its bytes
//   out: (T, C) f32; this dispatch writes the tokens whose id lies in its part, and nothing else
//   params.T, params.C, params.V: u32; params.row0, params.rows: u32, the part's rows
// One thread per output element; the grid may be 2-D past 65535 workgroups.

// #include "weight_decode"

@compute @workgroup_size(WG_X)
fn embedding_quant(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG_X;
  if (i >= params.T * params.C) { return; }
  let t = i / params.C;
  let c = i % params.C;
  let id = u32(clamp(ids[t], 0i, i32(params.V) - 1i));
  if (id < params.row0 || id - params.row0 >= params.rows) { return; }
  out[i] = w_at(id - params.row0, params.C, c);
}
