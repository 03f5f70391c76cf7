/**
 * Every `webswarm` command and the options it takes, each with its type, default and help said
 * once (option-table.ts parses and prints them). Options several commands share are declared
 * once below and spread in; a default that differs between commands (batch, seed) is declared
 * in each. The trainers' optimizer defaults come from their one table, trainer-defaults.ts.
 * Loaded at start-up, so it imports nothing heavy: each `run` imports its command's modules.
 */
import type { OptionTable, CommandSpec } from './option-table.ts'
import { defaultsLine, TRAINER_DEFAULTS } from './trainer-defaults.ts'

/** Requests a minute per key / IP by default: generous for one user's tools, a brake on floods. */
export const DEFAULT_RATE_LIMIT_PER_MINUTE = 600

const DEVICE: OptionTable = {
  device: { type: 'string', arg: 'webgpu|cpu', default: 'webgpu', help: "WebGPU through Node's 'webgpu' package, or the CPU twins of the kernels" },
  quiet: { type: 'boolean', help: 'no progress lines on stderr' }
}

const MODEL: OptionTable = {
  model: { type: 'string', arg: 'MODEL', help: 'a .gguf file or its http(s) URL, a folder holding one .gguf, or a Hugging Face safetensors folder or URL (required)' }
}

const GPU_BUDGET: OptionTable = {
  'max-gpu-memory': { type: 'string', arg: 'SIZE', help: 'refuse, naming the numbers, a load whose weights + KV cache + scratch exceed SIZE (4GB, 1.5GiB, 800MB)' }
}

const SWARM: OptionTable = {
  bootstrap: { type: 'string', multiple: true, arg: 'MULTIADDR|URL', help: "a relay: its multiaddr (…/p2p/<id>) or its page URL, which also gives its peer relays and STUN/TURN list; repeatable: every relay named is merged (required)" },
  'ice-servers': { type: 'string', arg: 'LIST|none', derivedDefault: "the relay's list (URL form) or a public STUN server", help: 'STUN/TURN URLs, comma-separated (turn:user:pass@host:port); none = host candidates only (loopback/LAN)' }
}

/** The prompt and sampling of both `generate`s. */
const PROMPT: OptionTable = {
  tokens: { type: 'string', arg: 'IDS', help: 'the prompt as token ids, 5,17,3 (ids are printed back)' },
  prompt: { type: 'string', arg: 'TEXT', help: 'the prompt as text (needs a tokenizer; text is printed back)' },
  chat: { type: 'string', arg: 'TEXT', help: "one chat turn in the model's own template; stops at end of turn" },
  system: { type: 'string', arg: 'TEXT', help: 'the system message of --chat' },
  'max-new-tokens': { type: 'string', arg: 'N', help: 'tokens to generate (required)' },
  temperature: { type: 'string', arg: 'T', default: 0, help: 'sampling temperature; 0 is greedy' },
  'top-k': { type: 'string', arg: 'K', default: 0, help: 'sample among the K likeliest tokens; 0: all' },
  'top-p': { type: 'string', arg: 'P', default: 1, help: 'sample within the top probability mass P' },
  seed: { type: 'string', arg: 'S', default: 0, help: "the sampler's seed" },
  out: { type: 'string', arg: 'FILE', help: 'also write {"tokens": [new ids]} to FILE' }
}

const MODEL_ID: OptionTable = {
  'model-id': { type: 'string', arg: 'ID', derivedDefault: "--model's file or folder name", help: "the id the swarm's servers announce the model by" }
}

/** The inner AdamW of both trainers: its defaults are each trainer's row of TRAINER_DEFAULTS. */
function adamw (d: (typeof TRAINER_DEFAULTS)[keyof typeof TRAINER_DEFAULTS]): OptionTable {
  return {
    lr: { type: 'string', arg: 'LR', default: d.lr, help: 'peak learning rate' },
    'min-lr': { type: 'string', arg: 'LR', derivedDefault: 'lr / 10', help: 'learning rate at the end of the cosine decay' },
    beta1: { type: 'string', arg: 'B', default: d.beta1, help: "AdamW's β1" },
    beta2: { type: 'string', arg: 'B', default: d.beta2, help: "AdamW's β2" },
    'weight-decay': { type: 'string', arg: 'W', default: d['weight-decay'], help: 'decoupled weight decay' },
    clip: { type: 'string', arg: 'C', default: d.clip, help: 'global gradient-norm clip; 0: none' }
  }
}

export const COMMANDS: readonly CommandSpec[] = [
  {
    key: 'logits',
    synopsis: '--model MODEL --tokens 5,17,3 --out FILE',
    about: 'writes {"logits": [[...], ...]} (every position, f32)',
    options: {
      ...MODEL,
      tokens: { type: 'string', arg: 'IDS', help: 'the input token ids (required)' },
      out: { type: 'string', arg: 'FILE', help: 'where the logits go (required)' },
      ...GPU_BUDGET,
      ...DEVICE
    },
    run: async f => await (await import('./commands.ts')).logits(f)
  },
  {
    key: 'generate',
    synopsis: '--model MODEL (--tokens IDS | --prompt TEXT | --chat TEXT) --max-new-tokens N [options]',
    about: 'streams text (or ids) to stdout; --chat: one chat turn in the model\'s own template\n(tokenizer.chat_template / tokenizer_config.json), stopping at end of turn',
    options: { ...MODEL, ...PROMPT, ...GPU_BUDGET, ...DEVICE },
    run: async f => await (await import('./commands.ts')).generateCmd(f)
  },
  {
    key: 'grad',
    synopsis: '--model DIR --inputs IDS --targets IDS --out DIR2',
    about: 'writes DIR2/grads.safetensors (weight names) and DIR2/result.json {"loss": x}',
    options: {
      ...MODEL,
      inputs: { type: 'string', arg: 'IDS', help: 'input token ids (required)' },
      targets: { type: 'string', arg: 'IDS', help: 'target token ids, as many as --inputs (required)' },
      out: { type: 'string', arg: 'DIR2', help: 'where the gradients and loss go (required)' },
      ...GPU_BUDGET,
      ...DEVICE
    },
    run: async f => await (await import('./commands.ts')).grad(f)
  },
  {
    key: 'train',
    synopsis: '(--config FILE | --model DIR) --data FILE|brown --steps N --out DIR [options]',
    about: `single-peer training with a progress line and checkpoints in DIR\n${defaultsLine('train')}`,
    options: {
      config: { type: 'string', arg: 'FILE', help: 'a Hugging Face config.json: train from scratch' },
      model: { type: 'string', arg: 'DIR', help: 'continue from these weights' },
      data: { type: 'string', arg: 'FILE|brown', help: 'byte-level training text; brown: the Brown corpus (required)' },
      steps: { type: 'string', arg: 'N', help: 'optimizer steps (required)' },
      out: { type: 'string', arg: 'DIR', help: 'checkpoint directory (required)' },
      batch: { type: 'string', arg: 'B', default: 8, help: 'sequences per step' },
      'seq-len': { type: 'string', arg: 'T', default: 64, help: 'tokens per sequence' },
      warmup: { type: 'string', arg: 'N', derivedDefault: 'min(100, steps / 10)', help: 'linear warm-up steps' },
      ...adamw(TRAINER_DEFAULTS.train),
      seed: { type: 'string', arg: 'S', default: 0, help: 'initialisation and data order' },
      'checkpoint-every': { type: 'string', arg: 'N', default: 0, help: 'save a checkpoint every N steps; 0: at the end only' },
      'eval-every': { type: 'string', arg: 'N', default: 0, help: 'validation loss every N steps; 0: at the end only' },
      resume: { type: 'boolean', help: 'continue the run checkpointed in --out' },
      ...DEVICE
    },
    run: async f => await (await import('./commands.ts')).train(f)
  },
  {
    key: 'serve',
    synopsis: '--model MODEL --bootstrap MULTIADDR|URL [--blocks A:B | --num-blocks N] [--experts SPEC|auto] [options]',
    about: 'serves a span of blocks and/or MoE experts to the swarm until SIGINT/SIGTERM\n(auto: the least-covered experts, keeping often co-selected ones together)',
    options: {
      ...MODEL,
      ...SWARM,
      blocks: { type: 'string', arg: 'A:B', help: 'serve blocks [A, B)' },
      'num-blocks': { type: 'string', arg: 'N', derivedDefault: "as many as fit, at most the model's", help: 'serve the least-served window of N blocks, rebalanced now and then' },
      experts: { type: 'string', arg: 'LAYER:E,E;...|auto', help: 'host these MoE experts (alone or beside --blocks); auto: the scheduler chooses' },
      'expert-layers': { type: 'string', arg: 'LAYERS', derivedDefault: 'every MoE layer', help: 'with --experts auto: the layers to choose from' },
      'expert-slots': { type: 'string', arg: 'N', derivedDefault: "one layer's worth", help: 'with --experts auto: how many experts to host' },
      'remote-experts': { type: 'string', arg: 'LAYERS', help: "run these MoE layers' experts on the swarm's expert hosts" },
      'cache-tokens': { type: 'string', arg: 'N', default: 4096, help: 'KV-cache positions offered (a few chat sessions of the tiny models)' },
      ...MODEL_ID,
      ...GPU_BUDGET,
      ...DEVICE
    },
    run: async f => await (await import('./serve.ts')).serve(f)
  },
  {
    key: 'generate --bootstrap',
    synopsis: 'MULTIADDR|URL --model MODEL (--tokens IDS | --prompt TEXT | --chat TEXT) --max-new-tokens N [--verify RATE | --verify-window N] [options]',
    about: 'runs the blocks on the swarm; only config, embedding and head are read from --model',
    options: {
      ...SWARM,
      ...MODEL,
      ...PROMPT,
      verify: { type: 'string', arg: 'RATE', help: "check servers' outputs on other servers after that fraction of steps (0.05 is cheap, 1: every step), ban liars, publish signed evidence" },
      'verify-window': { type: 'string', arg: 'N', help: "check each server's outputs N positions at a time instead" },
      ...MODEL_ID,
      ...GPU_BUDGET,
      ...DEVICE
    },
    run: async f => await (await import('./swarm-generate.ts')).swarmGenerateCmd(f)
  },
  {
    key: 'train --bootstrap',
    synopsis: 'MULTIADDR|URL --run ID [--syncs N] [--declare [options]]',
    about: `DiLoCo with the swarm's other trainers (--declare: declare run ID if nobody has;\n--steps/--min-lr: cosine decay of the inner lr over the run, else constant)\n${defaultsLine('train --bootstrap')}`,
    options: {
      ...SWARM,
      run: { type: 'string', arg: 'ID', help: 'the run to train (required)' },
      syncs: { type: 'string', arg: 'N', derivedDefault: "the run's totalSyncs", help: 'stop after N syncs' },
      declare: { type: 'boolean', help: 'declare the run with the options below unless the swarm already has it' },
      config: { type: 'string', arg: 'FILE', derivedDefault: 'the tiny byte-level Llama', help: "--declare: the model's Hugging Face config.json, trained from scratch" },
      'inner-steps': { type: 'string', arg: 'H', default: 20, help: '--declare: inner steps per sync' },
      'seq-len': { type: 'string', arg: 'T', default: 32, help: '--declare: tokens per sequence' },
      batch: { type: 'string', arg: 'B', default: 1, help: '--declare: sequences per inner step' },
      warmup: { type: 'string', arg: 'N', default: 0, help: '--declare: linear warm-up steps of the inner lr' },
      steps: { type: 'string', arg: 'N', default: 0, help: '--declare: cosine decay of the inner lr to --min-lr at run step N; 0: constant' },
      ...adamw(TRAINER_DEFAULTS['train --bootstrap']),
      fragments: { type: 'string', arg: 'F', default: 1, help: '--declare: streaming fragments' },
      seed: { type: 'string', arg: 'S', default: 1, help: '--declare: initialisation and data order' },
      codec: { type: 'string', arg: 'q8|topk|sparseloco', default: 'q8', help: '--declare: pseudo-gradient compression' },
      'ef-decay': { type: 'string', arg: 'B', derivedDefault: "the codec's preset", help: "--declare: β of sparseloco's error-feedback momentum" },
      'topk-chunk': { type: 'string', arg: 'C', default: 256, help: '--declare: top-k chunk, elements' },
      'topk-k': { type: 'string', arg: 'K', default: 4, help: '--declare: elements kept per chunk' },
      'topk-bits': { type: 'string', arg: 'B', default: 2, help: '--declare: bits per kept value' },
      'topk-result-bits': { type: 'string', arg: 'B', default: 4, help: "--declare: bits per value of the owners' mean" },
      'delay-outer': { type: 'boolean', help: '--declare: one-step-delayed outer update (a sync lands at the next one)' },
      ...DEVICE
    },
    run: async f => await (await import('./swarm-train.ts')).swarmTrain(f)
  },
  {
    key: 'api',
    synopsis: '--bootstrap MULTIADDR|URL --model MODEL [--host H] [--port P] [--api-key KEY[,KEY]] [--rate-limit N]',
    about: 'OpenAI-compatible API (/v1/chat/completions, /v1/completions, /v1/models) on H:P,\nrunning the blocks on the swarm',
    options: {
      ...SWARM,
      ...MODEL,
      ...MODEL_ID,
      host: { type: 'string', arg: 'H', default: '127.0.0.1', help: 'address to listen on' },
      port: { type: 'string', arg: 'P', default: 8000, help: 'port to listen on; 0: any free one' },
      'api-key': { type: 'string', arg: 'KEY[,KEY]', derivedDefault: 'env WEBSWARM_API_KEY, else none', help: 'require Authorization: Bearer KEY' },
      'rate-limit': { type: 'string', arg: 'N', default: DEFAULT_RATE_LIMIT_PER_MINUTE, help: 'requests a minute per key or IP; 0: none' },
      ...DEVICE
    },
    run: async f => await (await import('./api.ts')).apiCmd(f)
  }
]

/** The end of `webswarm --help`: what MODEL and the swarm options mean. */
export const OVERVIEW_EPILOGUE = `MODEL: a .gguf file or its http(s) URL (e.g. a relay's /models/NAME.gguf), a folder holding one
  .gguf, or a Hugging Face safetensors folder or URL. Only the bytes a command needs are read.
Swarm commands (serve, api, generate --bootstrap, train --bootstrap) take --bootstrap (a relay's
  multiaddr or page URL; repeatable) and --ice-servers LIST|none.
Every command takes --device webgpu|cpu and --quiet.
`
