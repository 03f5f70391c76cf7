/**
 * GGUF (llama.cpp's model file, v3): read a header over any ModelSource, map it to a
 * ModelConfig and our parameter names, load a part's weights in their file encoding, and write
 * files (tests and benchmarks build models with the writer).
 *
 *   const h = await readGgufHeader(sourceFrom('m.gguf'), 'm.gguf')   // header bytes only
 *   const config = ggufConfig(h)                                      // llama / qwen2 / qwen3 / Mixtral
 *   await writeGgufFile('out.gguf', metadata, [{ name, shape, type: GGML.Q8_0, data }])
 *
 * Loading goes through model.ts (`loadModel`, `loadBlocks`, `loadPart` on a `.gguf` source).
 */
export { GgufMetadataError, UnsupportedGgufError } from './errors.ts'
export { GGML, ggmlTypeInfo, ggmlTypeName, type GgmlTypeInfo } from './ggml-types.ts'
export { DEFAULT_ALIGNMENT, GgufType, LIMITS as GGUF_LIMITS, metaValue, parseGgufHeader, readGgufHeader, readGgufTensor, type GgufHeader, type GgufScalar, type GgufTensorInfo, type GgufValue } from './read.ts'
export { ENCODABLE_TYPES, encodeValues } from './quantize.ts'
export { encodeGguf, ggufHeaderBytes, gv, writeGguf, writeGgufFile, type GgufSink, type GgufWriteTensor, type RowSource } from './write.ts'
export { GGUF_ARCHITECTURES, ROPE_FREQS, ggufArch, ggufConfig, metaNumber, metaString, qkPermuted } from './config.ts'
export { ggufNameOf, paramNameOf } from './names.ts'
export { GgufModelFile, type GgufLoadOptions } from './load.ts'
