/**
 * STUN/TURN server lists as operators and users write them: `stun:host:port`,
 * `turn:user:pass@host:port`, comma-separated; `none` = host candidates only (loopback / LAN).
 * Shared by the relay's `--ice-server` and the CLI peers' `--ice-servers`.
 */
import { NetConfigError } from './errors.ts'

/** `turn:user:pass@host:port` → { urls: 'turn:host:port', username, credential }. */
export function parseIceServer (s: string): RTCIceServer {
  const m = /^(stuns?|turns?):(?:([^:@]+):([^@]+)@)?(.+)$/.exec(s)
  if (m === null) throw new NetConfigError(`--ice-server: ${JSON.stringify(s)} is not a stun:/stuns:/turn:/turns: URL`)
  const [, scheme, username, credential, rest] = m
  return username === undefined ? { urls: `${scheme}:${rest}` } : { urls: `${scheme}:${rest}`, username, credential }
}

/** "stun:a:3478,turn:u:p@b:3478" → servers; "none" → [] (no STUN/TURN: host candidates only). */
export function parseIceServerList (list: string): RTCIceServer[] {
  const items = list.split(',').map(s => s.trim()).filter(s => s !== '')
  if (items.length === 0) throw new NetConfigError('--ice-servers: empty list (use "none" for host candidates only)')
  if (items.includes('none')) {
    if (items.length > 1) throw new NetConfigError('--ice-servers: "none" cannot be combined with servers')
    return []
  }
  return items.map(parseIceServer)
}
