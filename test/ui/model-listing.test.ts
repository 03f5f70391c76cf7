import { describe, expect, it } from 'vitest'
import { listedFiles, parseModelListing } from '../../web/src/ui/model-listing.ts'

const RELAY = 'http://relay.test:8080/'
const listing = parseModelListing({
  default: 'byte-llama',
  models: [
    { name: 'byte-llama', bytes: 1, format: 'safetensors', files: ['config.json', 'model.safetensors'] },
    { name: 'x.gguf', bytes: 1, format: 'gguf', files: ['x.gguf'] },
    { name: 'old', bytes: 1, format: 'safetensors' },
    { name: 'odd', files: ['config.json', 7] },
    { bytes: 3 }
  ]
})

describe('the relay model listing as the page reads it', () => {
  it('keeps well-formed entries; a relay without `files` (or a malformed list) gives none', () => {
    expect(listing.models).toEqual([
      { name: 'byte-llama', files: ['config.json', 'model.safetensors'] },
      { name: 'x.gguf', files: ['x.gguf'] },
      { name: 'old' },
      { name: 'odd' }
    ])
    expect(parseModelListing(null)).toEqual({ default: undefined, models: [] })
  })

  it('finds the files of a relay model by URL, /models/default standing for the default folder', () => {
    expect(listedFiles(listing, RELAY, `${RELAY}models/default`)).toEqual(['config.json', 'model.safetensors'])
    expect(listedFiles(listing, RELAY, `${RELAY}models/byte-llama/`)).toEqual(['config.json', 'model.safetensors'])
    expect(listedFiles(listing, RELAY, `${RELAY}models/x.gguf`)).toEqual(['x.gguf'])
  })

  it('gives none for a model elsewhere or not listed: the page then probes as on any static server', () => {
    expect(listedFiles(listing, RELAY, 'https://huggingface.co/org/m/resolve/main')).toBeUndefined()
    expect(listedFiles(listing, RELAY, `${RELAY}models/unlisted`)).toBeUndefined()
    expect(listedFiles(listing, RELAY, `${RELAY}models/old`)).toBeUndefined()
  })
})
