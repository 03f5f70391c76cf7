/**
 * Hugging Face decoder-only transformers (Llama, Mistral, Qwen2, Qwen3, Mixtral) on the op
 * library — one implementation for `cpu` and `webgpu`, knowing nothing of the network.
 *
 *   const gpu = await GpuBackend.create()
 *   const model = await loadModel('models/byte-llama', gpu)           // dir, https URL, or Files
 *   const q4 = await loadModel('llama-3.2-1b-q4_k_m.gguf', gpu)       // GGUF: weights stay Q4_K on the GPU
 *   const ids = await generate(model, model.tokenizer!.encode('The '), { maxNewTokens: 40, temperature: 0.8, onToken: id => … })
 *
 * Pipeline-sharded serving builds on the span API: a peer loads only its blocks and runs them
 * on hidden states it receives, with one KV cache per session:
 *
 *   const span = await loadBlocks(sourceFrom(url), gpu, { start: 4, end: 8 })
 *   const cache = span.newCache(maxTokens)
 *   const out = span.forward(hidden, cache)                          // (T, C) → (T, C)
 *
 * MoE layers split into route → gather → experts → combine (moe.ts) so experts can live on
 * other peers. Training: `Trainer` (AdamW, clipping, warm-up + cosine, accumulation),
 * `lossAndGradients`, checkpoints in HF layout + optimizer state (checkpoint.ts).
 */
export { parseConfig, toHfConfig, isMoe, type ModelConfig, type Architecture } from './config.ts'
export * from './errors.ts'
export { BlockSpan, CausalLM, Embedding, Head, KvCache, assertTrainable, ggufFileOf, initModel, loadBlocks, loadConfig, loadModel, loadPart, openGguf, uploadParam, uploadParams, type ParamStore, type LoadOptions } from './model.ts'
export { DecoderBlock, type GradSink, type BlockTape } from './block.ts'
export { MoeLayer, runExperts, runOneExpert, type Routing, type ExpertWeights } from './moe.ts'
export { InferenceSession, generate, type GenerateOptions } from './generate.ts'
export { Sampler, argmax, type SamplingOptions } from './sampler.ts'
export { ByteTokenizer, HfTokenizer, loadTokenizer, type TextTokenizer } from './tokenizer.ts'
export { blobSource, directorySource, isGgufName, sourceFrom, urlSource, withFile, type ModelSource } from './source.ts'
export * from './gguf/index.ts'
export { WeightIndex, loadHostParams, loadHostWeights, type HostParam, type LoadProgress, type ProgressFn, type HostWeights } from './weights.ts'
export { blockParams, embedParams, headParams, partParams, wholeModel, type BlockRange, type PartSpec, type ParamSpec } from './params.ts'
export { AdamW, type AdamWOptions } from './optimizer.ts'
export { learningRate, type ScheduleOptions } from './schedule.ts'
export { Trainer, accumulateGradients, evaluateLoss, lossAndGradients, type StepResult } from './train.ts'
export { TextDataset, brownToText, type Window } from './data.ts'
export { directoryStore, indexedDbStore, opfsStore, saveCheckpoint, loadOptimizerState, readTrainerMeta, storeSource, type CheckpointStore } from './checkpoint.ts'
