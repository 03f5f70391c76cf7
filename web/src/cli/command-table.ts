/**
 * Every `webswarm` command and the options it takes, each with its type, default and help said
 * once (option-table.ts parses and prints them). Options several commands share are declared
 * once below and spread in; a default that differs between commands (batch, seed) is declared
 * in each. The trainers' optimizer defaults come from their one table, trainer-defaults.ts.
 * Loaded at start-up, so it imports nothing heavy: each `run` imports its command's modules.
 */
import { alsoAs, derived, flag, repeatable, value, type CommandSpec, type OptionTable } from './option-table.ts'
import { defaultsLine, TRAINER_DEFAULTS } from './trainer-defaults.ts'

/** Requests a minute per key / IP by default: generous for one user's tools, a brake on floods. */
export const DEFAULT_RATE_LIMIT_PER_MINUTE = 600

const DEVICE: OptionTable = {
  device: value('webgpu|cpu', "WebGPU through Node's 'webgpu' package, or the CPU twins of the kernels", 'webgpu'),
  quiet: flag('no progress lines on stderr')
}

const MODEL: OptionTable = {
  model: value('MODEL', 'a .gguf file or its http(s) URL, a folder holding one .gguf, or a Hugging Face safetensors folder or URL (required)')
}

const GPU_BUDGET: OptionTable = {
  'max-gpu-memory': value('SIZE', 'refuse, naming the numbers, a load whose weights + KV cache + scratch exceed SIZE (4GB, 1.5GiB, 800MB)')
}

const SWARM: OptionTable = {
  bootstrap: repeatable('MULTIADDR|URL', "a relay: its multiaddr (…/p2p/<id>) or its page URL, which also gives its peer relays and STUN/TURN list; repeatable: every relay named is merged (required)"),
  'ice-servers': alsoAs(repeatable('LIST|none', 'STUN/TURN URLs, comma-separated or repeated (turn:user:pass@host:port); none = host candidates only (loopback/LAN)', derived("the relay's list (URL form) or a public STUN server")), 'ice-server')
}

/** The prompt and sampling of both `generate`s. */
const PROMPT: OptionTable = {
  tokens: value('IDS', 'the prompt as token ids, 5,17,3 (the new tokens are printed as ids too)'),
  prompt: value('TEXT', 'the prompt as text (needs a tokenizer; the continuation is printed as text)'),
  // The one rule of web/src/api/prompt.ts, which the API and the page use too.
  chat: value('TEXT', 'one user turn, rendered as the API renders chats: the model\'s chat template, else the transcript "User: TEXT\\nAssistant:" (stops at "\\nUser:"); ends at end of turn'),
  system: value('TEXT', 'the system message of --chat'),
  'max-new-tokens': value('N', 'tokens to generate (required)'),
  temperature: value('T', 'sampling temperature; 0 is greedy', 0),
  'top-k': value('K', 'sample among the K likeliest tokens; 0: all', 0),
  'top-p': value('P', 'sample within the top probability mass P', 1),
  seed: value('S', "the sampler's seed", 0),
  out: value('FILE', 'also write {"tokens": [new ids]} to FILE')
}

const MODEL_ID: OptionTable = {
  'model-id': value('ID', "the id the swarm's servers announce the model by", derived("--model's file or folder name"))
}

/** The inner AdamW of both trainers: its defaults are each trainer's row of TRAINER_DEFAULTS. */
function adamw (d: (typeof TRAINER_DEFAULTS)[keyof typeof TRAINER_DEFAULTS]): OptionTable {
  return {
    lr: value('LR', 'peak learning rate', d.lr),
    'min-lr': value('LR', 'learning rate at the end of the cosine decay', derived('lr / 10')),
    beta1: value('B', "AdamW's β1", d.beta1),
    beta2: value('B', "AdamW's β2", d.beta2),
    'weight-decay': value('W', 'decoupled weight decay', d['weight-decay']),
    clip: value('C', 'global gradient-norm clip; 0: none', d.clip)
  }
}

export const COMMANDS: readonly CommandSpec[] = [
  {
    key: 'logits',
    synopsis: '--model MODEL --tokens 5,17,3 --out FILE',
    about: 'writes {"logits": [[...], ...]} (every position, f32)',
    options: {
      ...MODEL,
      tokens: value('IDS', 'the input token ids (required)'),
      out: value('FILE', 'where the logits go (required)'),
      ...GPU_BUDGET,
      ...DEVICE
    },
    run: async f => await (await import('./commands.ts')).logits(f)
  },
  {
    key: 'generate',
    synopsis: '--model MODEL (--tokens IDS | --prompt TEXT | --chat TEXT) --max-new-tokens N [options]',
    about: 'streams the new text (or ids) to stdout',
    options: { ...MODEL, ...PROMPT, ...GPU_BUDGET, ...DEVICE },
    run: async f => await (await import('./commands.ts')).generateCmd(f)
  },
  {
    key: 'grad',
    synopsis: '--model DIR --inputs IDS --targets IDS --out DIR2',
    about: 'writes DIR2/grads.safetensors (weight names) and DIR2/result.json {"loss": x}',
    options: {
      ...MODEL,
      inputs: value('IDS', 'input token ids (required)'),
      targets: value('IDS', 'target token ids, as many as --inputs (required)'),
      out: value('DIR2', 'where the gradients and loss go (required)'),
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
      config: value('FILE', 'a Hugging Face config.json: train from scratch'),
      model: value('DIR', 'continue from these weights'),
      data: value('FILE|brown', 'byte-level training text; brown: the Brown corpus (required)'),
      steps: value('N', 'optimizer steps (required)'),
      out: value('DIR', 'checkpoint directory (required)'),
      batch: value('B', 'sequences per step', 8),
      'seq-len': value('T', 'tokens per sequence', 64),
      warmup: value('N', 'linear warm-up steps', derived('min(100, steps / 10)')),
      ...adamw(TRAINER_DEFAULTS.train),
      seed: value('S', 'initialisation and data order', 0),
      'checkpoint-every': value('N', 'save a checkpoint every N steps; 0: at the end only', 0),
      'eval-every': value('N', 'validation loss every N steps; 0: at the end only', 0),
      resume: flag('continue the run checkpointed in --out'),
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
      blocks: value('A:B', 'serve blocks [A, B)'),
      'num-blocks': value('N', 'serve the least-served window of N blocks, rebalanced now and then', derived("as many as fit, at most the model's")),
      experts: value('LAYER:E,E;...|auto', 'host these MoE experts (alone or beside --blocks); auto: the scheduler chooses'),
      'expert-layers': value('LAYERS', 'with --experts auto: the layers to choose from', derived('every MoE layer')),
      'expert-slots': value('N', 'with --experts auto: how many experts to host', derived("one layer's worth")),
      'remote-experts': value('LAYERS', "run these MoE layers' experts on the swarm's expert hosts"),
      'cache-tokens': value('N', 'KV-cache positions offered (a few chat sessions of the tiny models)', 4096),
      ...MODEL_ID,
      ...GPU_BUDGET,
      ...DEVICE
    },
    run: async f => await (await import('./serve.ts')).serve(f)
  },
  {
    key: 'generate --bootstrap',
    synopsis: '--bootstrap MULTIADDR|URL --model MODEL (--tokens IDS | --prompt TEXT | --chat TEXT) --max-new-tokens N [--verify RATE | --verify-window N] [options]',
    about: 'runs the blocks on the swarm; only config, embedding and head are read from --model',
    options: {
      ...SWARM,
      ...MODEL,
      ...PROMPT,
      verify: value('RATE', "check servers' outputs on other servers after that fraction of steps (0.05 is cheap, 1: every step), ban liars, publish signed evidence"),
      'verify-window': value('N', "check each server's outputs N positions at a time instead"),
      ...MODEL_ID,
      ...GPU_BUDGET,
      ...DEVICE
    },
    run: async f => await (await import('./swarm-generate.ts')).swarmGenerateCmd(f)
  },
  {
    key: 'train --bootstrap',
    synopsis: '--bootstrap MULTIADDR|URL --run ID [--syncs N] [--declare [options]]',
    about: `DiLoCo with the swarm's other trainers (--declare: declare run ID if nobody has;\n--steps/--min-lr: cosine decay of the inner lr over the run, else constant)\n${defaultsLine('train --bootstrap')}`,
    options: {
      ...SWARM,
      run: value('ID', 'the run to train (required)'),
      syncs: value('N', 'stop after N syncs', derived("the run's totalSyncs")),
      declare: flag('declare the run with the options below unless the swarm already has it'),
      config: value('FILE', "--declare: the model's Hugging Face config.json, trained from scratch", derived('the tiny byte-level Llama')),
      'inner-steps': value('H', '--declare: inner steps per sync', 20),
      'seq-len': value('T', '--declare: tokens per sequence', 32),
      batch: value('B', '--declare: sequences per inner step', 1),
      warmup: value('N', '--declare: linear warm-up steps of the inner lr', 0),
      steps: value('N', '--declare: cosine decay of the inner lr to --min-lr at run step N; 0: constant', 0),
      ...adamw(TRAINER_DEFAULTS['train --bootstrap']),
      fragments: value('F', '--declare: streaming fragments', 1),
      seed: value('S', '--declare: initialisation and data order', 1),
      codec: value('q8|topk|sparseloco', '--declare: pseudo-gradient compression', 'q8'),
      'ef-decay': value('B', "--declare: β of sparseloco's error-feedback momentum", derived("the codec's preset")),
      'topk-chunk': value('C', '--declare: top-k chunk, elements', 256),
      'topk-k': value('K', '--declare: elements kept per chunk', 4),
      'topk-bits': value('B', '--declare: bits per kept value', 2),
      'topk-result-bits': value('B', "--declare: bits per value of the owners' mean", 4),
      'delay-outer': flag('--declare: one-step-delayed outer update (a sync lands at the next one)'),
      'delay-outer-syncs': value('N', '--declare: delayed outer update over N syncs, 1–4 (a sync lands N later; 1 is --delay-outer)'),
      'trainer-thread': flag('--device cpu: inner steps on a thread of their own, the network and syncs on this one'),
      ...DEVICE
    },
    run: async f => await (await import('./swarm-train.ts')).swarmTrain(f)
  },
  {
    key: 'api',
    synopsis: '--bootstrap MULTIADDR|URL --model MODEL [--host H] [--port P] [--api-key KEY[,KEY]] [--rate-limit N]',
    about: 'OpenAI-compatible API (/v1/chat/completions, /v1/completions, /v1/models) on H:P for --model\nalone (one API per model), running the blocks on the swarm',
    options: {
      ...SWARM,
      ...MODEL,
      ...MODEL_ID,
      host: value('H', 'address to listen on', '127.0.0.1'),
      port: value('P', 'port to listen on; 0: any free one', 8000),
      'api-key': value('KEY[,KEY]', 'require Authorization: Bearer KEY', derived('env WEBSWARM_API_KEY, else none')),
      // --api-rate-limit: the relay's name for the same limit (npm start).
      'rate-limit': alsoAs(value('N', 'requests a minute per key or IP; 0: none', DEFAULT_RATE_LIMIT_PER_MINUTE), 'api-rate-limit'),
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
