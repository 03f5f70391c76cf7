// llama.cpp (node-llama-cpp, CPU) as a reference for tests and benches, run as a child process so a
// native crash or a second load of the addon never touches the test worker.
//
// Protocol: one JSON request on stdin, one JSON reply on file descriptor 3 (llama.cpp's own logs
// may reach stdout/stderr, so they cannot carry the reply).
//   request: { model: string, threads?: number, kvCache?: 'f16' | 'f32', vocabOnly?: boolean, requests: Op[] }
//   (vocabOnly: load the tokenizer alone, for info/tokenize/detokenize)
//   Op:
//     { op: 'info' }                                   → { bos, eos, eot, addBos, addEos, vocabularyType }
//     { op: 'tokenize', text, special, addBos }        → { tokens }   (addBos: prepend BOS if the model asks for it)
//     { op: 'detokenize', tokens, special }            → { text }
//     { op: 'generate', tokens, n, topK? }             → { tokens, top? }  greedy; top: per step, the topK
//                                                         [id, probability] pairs, most likely first
//     { op: 'timeDecode', tokens, n }                  → { tokens, seconds }  wall time of the n decode steps
//   reply: { ok: true, results: Result[] } | { ok: false, error: string }
import { writeSync } from 'node:fs'
import { getLlama, LlamaLogLevel } from 'node-llama-cpp'

const REPLY_FD = 3

function reply (value) {
  const bytes = Buffer.from(JSON.stringify(value))
  let off = 0
  while (off < bytes.length) off += writeSync(REPLY_FD, bytes, off)
}

async function readStdin () {
  const parts = []
  for await (const chunk of process.stdin) parts.push(chunk)
  return JSON.parse(Buffer.concat(parts).toString('utf8'))
}

/** Greedy decoding of n tokens after `prompt` in a fresh context (no state shared between ops). */
async function generate (model, req, prompt, n, topK, timed) {
  const context = await model.createContext({
    contextSize: Math.max(32, prompt.length + n + 1),
    batchSize: Math.max(1, prompt.length),
    sequences: 1,
    threads: req.threads ?? 1,
    experimentalKvCacheKeyType: req.kvCache === 'f32' ? 'F32' : 'F16',
    experimentalKvCacheValueType: req.kvCache === 'f32' ? 'F32' : 'F16'
  })
  try {
    const sequence = context.getSequence()
    const tokens = []
    const top = []
    let t0 = 0
    const it = sequence.evaluateWithMetadata(prompt, { probabilities: topK > 0 }, { temperature: 0 })
    for await (const out of it) {
      tokens.push(out.token)
      if (topK > 0) top.push([...out.probabilities.entries()].slice(0, topK))
      if (tokens.length === 1) t0 = performance.now() // the first token ends the prefill
      if (tokens.length >= n) break
    }
    const seconds = (performance.now() - t0) / 1000
    return timed ? { tokens, seconds, decodeSteps: tokens.length - 1 } : topK > 0 ? { tokens, top } : { tokens }
  } finally {
    await context.dispose()
  }
}

async function main () {
  const req = await readStdin()
  const llama = await getLlama({ gpu: false, build: 'never', progressLogs: false, logLevel: LlamaLogLevel.error, maxThreads: req.threads ?? 1 })
  const model = await llama.loadModel({ modelPath: req.model, gpuLayers: 0, vocabOnly: req.vocabOnly === true })
  const results = []
  for (const op of req.requests) {
    switch (op.op) {
      case 'info':
        results.push({
          bos: model.tokens.bos,
          eos: model.tokens.eos,
          eot: model.tokens.eot,
          addBos: model.tokens.shouldPrependBosToken,
          addEos: model.tokens.shouldAppendEosToken,
          vocabularyType: model.vocabularyType
        })
        break
      case 'tokenize': {
        const ids = model.tokenize(op.text, op.special === true)
        const bos = op.addBos === true && model.tokens.shouldPrependBosToken && model.tokens.bos != null ? [model.tokens.bos] : []
        results.push({ tokens: [...bos, ...ids] })
        break
      }
      case 'detokenize':
        results.push({ text: model.detokenize(op.tokens, op.special === true) })
        break
      case 'generate':
        results.push(await generate(model, req, op.tokens, op.n, op.topK ?? 0, false))
        break
      case 'timeDecode':
        results.push(await generate(model, req, op.tokens, op.n, 0, true))
        break
      default:
        throw new Error(`unknown op ${JSON.stringify(op.op)}`)
    }
  }
  await model.dispose()
  await llama.dispose()
  reply({ ok: true, results })
}

main().catch((e) => {
  try { reply({ ok: false, error: String(e?.stack ?? e) }) } catch {}
  process.exitCode = 1
})
