/**
 * The identity-stamp worker (pow-offthread.ts): answers one MintRequest with a MintReply, so the
 * page thread does none of the hashing.
 */
import { answerMint, type MintReply, type MintRequest } from './pow-offthread.ts'

const scope = self as unknown as { postMessage: (m: MintReply) => void, onmessage: ((ev: MessageEvent<MintRequest>) => void) | null }
scope.onmessage = ev => { void answerMint(ev.data).then(r => { scope.postMessage(r) }) }
