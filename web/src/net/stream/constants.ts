/**
 * Limits and timeouts of the framed tensor stream protocol. Each is a default a handler or caller
 * may override through {@link TensorStreamLimits}; each says its unit and why it has this value.
 */

/** Wire version carried in byte 0 of every frame; a peer speaking another version is reset. */
export const PROTOCOL_VERSION = 1

/** Bytes of the fixed frame header (version, type, flags, id, body length, crc32). */
export const FRAME_HEADER_BYTES = 16

/**
 * Largest message a WebRTC data channel carries portably (bytes). libp2p's WebRTC stream slices
 * every send() into messages of this size minus its own protobuf envelope.
 */
const WEBRTC_MAX_MESSAGE_BYTES = 16 * 1024

/**
 * Bytes libp2p-webrtc's protobuf + varint envelope adds to a data-channel message (it computes 6
 * for 16 KiB messages); 32 leaves margin for other implementations.
 */
const WEBRTC_ENVELOPE_BYTES = 32

/**
 * Payload bytes per DATA frame we send: one frame (header + chunk) fits one WebRTC message, so a
 * receiver never holds more than one data-channel message to verify a chunk, and a cancel or
 * reset takes effect within one chunk.
 */
export const DEFAULT_CHUNK_BYTES = WEBRTC_MAX_MESSAGE_BYTES - WEBRTC_ENVELOPE_BYTES - FRAME_HEADER_BYTES

/**
 * Largest frame body we accept from a peer (bytes): DATA chunks up to 64 KiB (other senders may
 * use TCP-sized chunks) and START bodies with metadata and many tensor descriptors. A header
 * announcing more is rejected before any body byte is buffered.
 */
export const MAX_FRAME_BODY_BYTES = 64 * 1024

/** Bytes the writer gathers into one send() call: few large sends keep per-call overhead low. */
export const SEND_BATCH_BYTES = 256 * 1024

/**
 * Bytes we let wait in a stream's own send queue once the transport says it is full (send()
 * returned false). libp2p refills the transport from that queue the moment it drains (WebRTC
 * drains only when its buffer is empty), so keeping ~one transport buffer (2 MiB for libp2p-webrtc)
 * queued means it never idles while we encode the next batch; beyond this we wait for 'drain'.
 */
export const MAX_QUEUED_SEND_BYTES = 4 * 1024 * 1024

/** Most dimensions a tensor may have. Eight covers every layout we move (B, H, T, D, …). */
export const MAX_RANK = 8

/** Longest tensor name (bytes of UTF-8); names are short keys like `hidden` or `kv.3`. */
export const MAX_NAME_BYTES = 255

/** Longest ERROR frame message (bytes of UTF-8); longer messages are truncated by the sender. */
export const MAX_ERROR_MESSAGE_BYTES = 1024

/** Default largest message payload (sum of tensor bytes) a receiver accepts: 256 MiB. */
export const DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024 * 1024

/** Default total payload bytes a receiver accepts on one stream: 4 GiB. */
export const DEFAULT_MAX_STREAM_BYTES = 4 * 1024 * 1024 * 1024

/** Default most tensors in one message. */
export const DEFAULT_MAX_TENSORS = 256

/** Default largest JSON metadata object of a message (bytes of UTF-8): metadata is small by design. */
export const DEFAULT_MAX_META_BYTES = 16 * 1024

/** Default most messages one side may send on one stream. */
export const DEFAULT_MAX_MESSAGES = 1_000_000

/**
 * Default streaming window (messages): how many messages a receiver lets the sender send ahead of
 * what it has consumed. Four keeps the pipe full while capping buffered memory at
 * 4 × maxMessageBytes.
 */
export const DEFAULT_WINDOW_MESSAGES = 4

/**
 * Default idle timeout (ms): how long we wait for the next byte from the peer, or for the peer to
 * drain our send buffer, before failing. A dead peer is noticed within this time even when the
 * transport has not yet seen the connection drop (ICE consent checks take ~30 s).
 */
export const DEFAULT_IDLE_TIMEOUT_MS = 20_000

/** Default total time (ms) a `call` may take, request and response included. */
export const DEFAULT_CALL_TIMEOUT_MS = 120_000

/** Default time (ms) to dial a peer and negotiate the protocol. */
export const DEFAULT_OPEN_TIMEOUT_MS = 30_000

/** Default time (ms) a stream handler may run before its stream is reset. */
export const DEFAULT_HANDLER_TIMEOUT_MS = 120_000

/** Default inbound streams per connection for one protocol (libp2p's own default is 32). */
export const DEFAULT_MAX_INBOUND_STREAMS = 32

/** Default outbound streams per connection for one handled protocol (libp2p's own default is 64). */
export const DEFAULT_MAX_OUTBOUND_STREAMS = 64
