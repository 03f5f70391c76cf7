#!/usr/bin/env -S npx tsx
/**
 * `webswarm` — the Node command line. Start-up stays fast: only node:util, the error classes
 * (cli/failures.ts) and the trainers' default table are loaded here, each command imports what
 * it needs when it runs.
 *
 *   npm run --silent webswarm -- logits   --model DIR --tokens 5,17,3 --out FILE
 *   npm run --silent webswarm -- generate --model DIR (--tokens IDS | --prompt TEXT) --max-new-tokens N [...]
 *   npm run --silent webswarm -- grad     --model DIR --inputs IDS --targets IDS --out DIR2
 *   npm run --silent webswarm -- train    (--config FILE | --model DIR) --data FILE --steps N --out DIR [...]
 *   every command: --device webgpu (default) | cpu
 */
import { parseArgs } from 'node:util'
import { UsageError, type Flags } from './args.ts'
import { exitStatusOf, isExpectedFailure } from './failures.ts'
import { defaultsLine } from './trainer-defaults.ts'

const USAGE = `usage: webswarm <command> [options]

commands:
  logits    --model MODEL --tokens 5,17,3 --out FILE
            writes {"logits": [[...], ...]} (every position, f32)
  generate  --model MODEL (--tokens IDS | --prompt TEXT) --max-new-tokens N
            [--temperature T] [--top-k K] [--top-p P] [--seed S] [--out FILE]
            streams text (or ids) to stdout; writes {"tokens": [new ids]} to FILE
            --chat TEXT [--system TEXT] instead of --prompt: one chat turn in the model's own
            template (tokenizer.chat_template / tokenizer_config.json); stops at end of turn
  grad      --model DIR --inputs IDS --targets IDS --out DIR2
            writes DIR2/grads.safetensors (weight names) and DIR2/result.json {"loss": x}
  train     (--config FILE | --model DIR) --data FILE|brown --steps N --out DIR
            [--batch B] [--seq-len T] [--lr LR] [--min-lr LR] [--warmup N]
            [--weight-decay W] [--beta1 B] [--beta2 B] [--clip C] [--seed S]
            [--checkpoint-every N] [--eval-every N] [--resume]
            single-peer training with a progress line and checkpoints in DIR
            ${defaultsLine('train')}

  serve     --model MODEL --bootstrap MULTIADDR [--blocks A:B | --num-blocks N]
            [--experts LAYER:E,E;... | --experts auto [--expert-layers LAYERS] [--expert-slots N]]
            [--remote-experts LAYERS] [--cache-tokens N] [--model-id ID]
            serves a span of blocks and/or MoE experts to the swarm until SIGINT/SIGTERM
            (auto: the least-covered experts, keeping often co-selected ones together)
  generate  --bootstrap MULTIADDR --model MODEL ... (as above) [--verify RATE | --verify-window N]
            runs the blocks on the swarm; only config, embedding and head are read from --model;
            --verify: check servers' outputs on other servers after that fraction of steps
            (0.05 is cheap, 1 checks every step), ban liars, publish signed evidence;
            --verify-window: check each server's outputs N positions at a time instead
  train     --bootstrap MULTIADDR --run ID [--syncs N]
            [--declare [--config FILE] [--inner-steps H] [--seq-len T] [--batch B] [--lr LR]
              [--warmup N] [--steps N [--min-lr LR]] [--beta1 B] [--beta2 B] [--weight-decay W]
              [--clip C] [--fragments F] [--seed S]
              [--codec q8|topk|sparseloco [--ef-decay B] [--topk-chunk C] [--topk-k K] [--topk-bits B] [--topk-result-bits B]]
              [--delay-outer]]
            DiLoCo with the swarm's other trainers (--declare: declare run ID if nobody has;
            --steps/--min-lr: cosine decay of the inner lr over the run, else constant)
            ${defaultsLine('train --bootstrap')}
  api       --bootstrap MULTIADDR|URL --model MODEL [--model-id ID] [--host H] [--port P]
            [--api-key KEY[,KEY]] [--rate-limit N]
            OpenAI-compatible API (/v1/chat/completions, /v1/completions, /v1/models) on
            H:P (default 127.0.0.1:8000), running the blocks on the swarm; --rate-limit: requests
            a minute per key or IP (default 600, 0 = none); key also from env WEBSWARM_API_KEY

options for every command:
  --device webgpu|cpu   WebGPU through Node's 'webgpu' package (default), or the CPU twins

MODEL: a .gguf file or its http(s) URL (e.g. a relay's /models/NAME.gguf), a folder holding one
  .gguf, or a Hugging Face safetensors folder or URL. Only the bytes a command needs are read.
options for commands that load a model (logits, generate, grad, serve):
  --max-gpu-memory SIZE  refuse (naming the numbers) a load whose weights + KV cache + scratch
                        exceed SIZE (4GB, 1.5GiB, 800MB); serve without --blocks takes as many
                        blocks as fit. Loads longer than a moment show bytes, rate and ETA on stderr

options for swarm commands (serve, generate --bootstrap, train --bootstrap):
  --bootstrap MULTIADDR|URL  a relay: its multiaddr (…/p2p/<id>), or its page URL
                        (http://host:8080), which also gives its peer relays and the relay
                        operator's STUN/TURN list. Repeatable: every relay named is merged; the
                        peer reserves on up to two and re-reserves on another when one dies
  --ice-servers LIST|none    STUN/TURN URLs, comma-separated (turn:user:pass@host:port);
                        none = host candidates only (loopback/LAN). Default: the relay's list
                        (URL form) or a public STUN server
`

/** Every flag any command takes (parseArgs rejects unknown ones). */
const OPTIONS = {
  model: { type: 'string' },
  config: { type: 'string' },
  tokens: { type: 'string' },
  prompt: { type: 'string' },
  chat: { type: 'string' },
  system: { type: 'string' },
  inputs: { type: 'string' },
  targets: { type: 'string' },
  out: { type: 'string' },
  data: { type: 'string' },
  steps: { type: 'string' },
  batch: { type: 'string' },
  'seq-len': { type: 'string' },
  lr: { type: 'string' },
  'min-lr': { type: 'string' },
  warmup: { type: 'string' },
  'weight-decay': { type: 'string' },
  beta1: { type: 'string' },
  beta2: { type: 'string' },
  clip: { type: 'string' },
  seed: { type: 'string' },
  'checkpoint-every': { type: 'string' },
  'eval-every': { type: 'string' },
  resume: { type: 'boolean' },
  'max-new-tokens': { type: 'string' },
  verify: { type: 'string' },
  'verify-window': { type: 'string' },
  temperature: { type: 'string' },
  'top-k': { type: 'string' },
  'top-p': { type: 'string' },
  device: { type: 'string' },
  quiet: { type: 'boolean' },
  // swarm: serve / generate --bootstrap (web/src/cli/serve.ts, swarm-generate.ts)
  bootstrap: { type: 'string', multiple: true },
  blocks: { type: 'string' },
  experts: { type: 'string' },
  'remote-experts': { type: 'string' },
  'expert-layers': { type: 'string' },
  'expert-slots': { type: 'string' },
  'num-blocks': { type: 'string' },
  'cache-tokens': { type: 'string' },
  'model-id': { type: 'string' },
  'max-gpu-memory': { type: 'string' },
  // swarm: train --bootstrap (web/src/cli/swarm-train.ts)
  run: { type: 'string' },
  declare: { type: 'boolean' },
  'ice-servers': { type: 'string' },
  syncs: { type: 'string' },
  'inner-steps': { type: 'string' },
  fragments: { type: 'string' },
  codec: { type: 'string' },
  'topk-chunk': { type: 'string' },
  'ef-decay': { type: 'string' },
  'topk-k': { type: 'string' },
  'topk-bits': { type: 'string' },
  'topk-result-bits': { type: 'string' },
  'delay-outer': { type: 'boolean' },
  // api (web/src/cli/api.ts)
  host: { type: 'string' },
  port: { type: 'string' },
  'api-key': { type: 'string' },
  'rate-limit': { type: 'string' },
  help: { type: 'boolean', short: 'h' }
} as const

async function main (argv: string[]): Promise<number> {
  let parsed
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true })
  } catch (e) {
    throw new UsageError((e as Error).message)
  }
  const [command, ...rest] = parsed.positionals
  const flags = parsed.values as Flags
  if (command === undefined || flags.help === true || command === 'help') {
    process.stdout.write(USAGE)
    return command === undefined && flags.help !== true ? 2 : 0
  }
  if (rest.length > 0) throw new UsageError(`unexpected argument '${rest[0]}'`)
  // Swarm commands run for long with many peers: a stray rejection on one connection is logged, not fatal.
  if (command === 'serve' || command === 'api' || flags.bootstrap !== undefined) (await import('../util/process-guard.ts')).keepRunningOnUnhandledRejections('webswarm')
  if (command === 'serve') return await (await import('./serve.ts')).serve(flags)
  if (command === 'api') return await (await import('./api.ts')).apiCmd(flags)
  if (command === 'generate' && flags.bootstrap !== undefined) return await (await import('./swarm-generate.ts')).swarmGenerateCmd(flags)
  if (command === 'train' && flags.bootstrap !== undefined) return await (await import('./swarm-train.ts')).swarmTrain(flags)
  const commands = await import('./commands.ts')
  switch (command) {
    case 'logits': return await commands.logits(flags)
    case 'generate': return await commands.generateCmd(flags)
    case 'grad': return await commands.grad(flags)
    case 'train': return await commands.train(flags)
    default: throw new UsageError(`unknown command '${command}' (try --help)`)
  }
}

main(process.argv.slice(2)).then(code => {
  process.exitCode = code
}, (e: unknown) => {
  const err = e as Error
  // One line for expected failures (bad input, no adapter, bad files); a stack only for bugs.
  if (isExpectedFailure(e)) process.stderr.write(`webswarm: ${err.message}\n`)
  else process.stderr.write(`webswarm: ${err?.stack ?? String(e)}\n`)
  process.exitCode = exitStatusOf(e)
})
