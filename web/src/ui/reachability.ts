/**
 * What the page could not reach, in one sentence for the notices (with their Retry): the relay
 * (joining failed), the model (its config could not be read), or both — which, when the model
 * comes from the relay, is one cause and one sentence naming the relay's URL.
 */
import type { ModelStatus, PageParams, SwarmStatus } from './context.ts'

/** The notice's text, or undefined when nothing failed (or it is still being tried). */
export function unreachableText (p: Pick<PageParams, 'relayUrl' | 'modelUrl'>, swarm: SwarmStatus, model: ModelStatus): string | undefined {
  const fromRelay = p.modelUrl.startsWith(p.relayUrl)
  const needs = 'Chat and Contribute need it.'
  if (swarm.state === 'error') {
    const relay = `The relay at ${p.relayUrl} could not be reached (${swarm.reason}).`
    if (model.state !== 'error' || fromRelay) return `${relay} ${needs}`
    return `${relay} The model at ${p.modelUrl} could not be read either (${model.reason}). ${needs}`
  }
  if (model.state !== 'error') return undefined
  return fromRelay
    ? `The relay at ${p.relayUrl} did not give the model ${p.modelUrl.slice(p.relayUrl.length)} (${model.reason}). ${needs}`
    : `The model at ${p.modelUrl} could not be read (${model.reason}). ${needs}`
}
