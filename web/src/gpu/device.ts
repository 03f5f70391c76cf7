import { nodeBuiltin } from '../util/node-builtin.ts'
import { NoWebGpuError } from './errors.ts'

/** What we learned about the adapter: shown on the page, logged by the CLI, used to pick variants. */
export interface GpuInfo {
  /** 'browser' (navigator.gpu) or 'node' (Dawn through the `webgpu' package). */
  runtime: 'browser' | 'node'
  vendor: string
  architecture: string
  device: string
  description: string
  /** True for software adapters (SwiftShader, lavapipe, WARP): expect ~0.3 GFLOP/s. */
  software: boolean
  /** Adapter features we enabled on the device. */
  f16: boolean
  subgroups: boolean
  timestampQuery: boolean
  limits: {
    maxStorageBufferBindingSize: number
    maxBufferSize: number
    maxComputeWorkgroupStorageSize: number
    maxComputeInvocationsPerWorkgroup: number
    maxComputeWorkgroupsPerDimension: number
    maxStorageBuffersPerShaderStage: number
  }
}

export interface AcquireOptions {
  /** @default 'high-performance' */
  powerPreference?: GPUPowerPreference
  /** Enable `shader-f16` when the adapter has it. @default true */
  allowF16?: boolean
  /** Enable `subgroups` when the adapter has it. @default true */
  allowSubgroups?: boolean
}

export interface AcquiredDevice {
  adapter: GPUAdapter
  device: GPUDevice
  info: GpuInfo
}

const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json'
const SYSTEM_ICD_DIRS = ['/usr/share/vulkan/icd.d', '/etc/vulkan/icd.d', '/usr/local/share/vulkan/icd.d']

/**
 * Node: Dawn needs a Vulkan driver. On a GPU-less server the system's drivers give no adapter
 * (Debian 12's lavapipe is too old for Dawn), so we add the SwiftShader driver that Debian's
 * chromium package ships to the system's list; Dawn still prefers a real GPU when there is one.
 * The list must be set before the first instance: a second Dawn instance in one process crashes.
 * An explicit VK_ICD_FILENAMES / VK_DRIVER_FILES is always respected.
 */
async function nodeAdapter (powerPreference: GPUPowerPreference): Promise<GPUAdapter | null> {
  const fs = await nodeBuiltin('node:fs')
  const env = process.env
  env.XDG_RUNTIME_DIR ??= '/tmp' // silences SwiftShader's "XDG_RUNTIME_DIR is invalid" line
  if (env.VK_ICD_FILENAMES === undefined && env.VK_DRIVER_FILES === undefined && fs.existsSync(SWIFTSHADER_ICD)) {
    const system = SYSTEM_ICD_DIRS.flatMap(d => fs.existsSync(d) ? fs.readdirSync(d).filter(f => f.endsWith('.json')).map(f => `${d}/${f}`) : [])
    env.VK_ICD_FILENAMES = [...system, SWIFTSHADER_ICD].join(':')
  }
  const specifier = 'webgpu'
  let mod: { create: (o: string[]) => GPU, globals: object }
  try {
    mod = await import(/* @vite-ignore */ specifier)
  } catch (e) {
    throw new NoWebGpuError(`the 'webgpu' package failed to load (${(e as Error).message}); run npm install`)
  }
  Object.assign(globalThis, mod.globals) // GPUBufferUsage, GPUMapMode, … as in a browser
  nodeGpu ??= mod.create([])
  return await nodeGpu.requestAdapter({ powerPreference })
}

/** One Dawn instance per process (see above). */
let nodeGpu: GPU | undefined

/** Node without a navigator.gpu (Node 22 has `navigator`, but no `gpu` on it). */
function isNode (): boolean {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator
  return typeof process !== 'undefined' && process.versions?.node !== undefined && nav?.gpu === undefined
}

/** Finds an adapter and opens a device with the features and limits we use. */
export async function acquireDevice (opts: AcquireOptions = {}): Promise<AcquiredDevice> {
  const runtime = isNode() ? 'node' : 'browser'
  const powerPreference = opts.powerPreference ?? 'high-performance'
  let adapter: GPUAdapter | null
  if (runtime === 'node') {
    adapter = await nodeAdapter(powerPreference)
  } else {
    const gpu = (globalThis as { navigator?: { gpu?: GPU } }).navigator?.gpu
    if (gpu === undefined) {
      throw new NoWebGpuError('WebGPU is not available in this browser: use a recent Chrome or Edge (or Firefox/Safari with WebGPU enabled), on https or localhost')
    }
    adapter = await gpu.requestAdapter({ powerPreference })
  }
  if (adapter === null) {
    throw new NoWebGpuError(runtime === 'node'
      ? 'no WebGPU adapter: install a Vulkan driver, or on a GPU-less machine `apt-get install chromium libvulkan1` (SwiftShader), or run with --device cpu'
      : 'no WebGPU adapter: the browser has WebGPU but no usable GPU (check chrome://gpu)')
  }
  const want: GPUFeatureName[] = []
  const has = (f: string): boolean => adapter.features.has(f)
  if ((opts.allowF16 ?? true) && has('shader-f16')) want.push('shader-f16')
  if ((opts.allowSubgroups ?? true) && has('subgroups')) want.push('subgroups' as GPUFeatureName)
  if (has('timestamp-query')) want.push('timestamp-query')
  const l = adapter.limits
  const device = await adapter.requestDevice({
    requiredFeatures: want,
    requiredLimits: {
      maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
      maxBufferSize: l.maxBufferSize,
      maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
      maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
      maxComputeWorkgroupSizeY: l.maxComputeWorkgroupSizeY,
      maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage
    }
  })
  const ai = adapter.info
  const text = `${ai.vendor} ${ai.architecture} ${ai.device} ${ai.description}`.toLowerCase()
  const info: GpuInfo = {
    runtime,
    vendor: ai.vendor,
    architecture: ai.architecture,
    device: ai.device,
    description: ai.description,
    software: /swiftshader|lavapipe|llvmpipe|warp|software/.test(text) || (adapter as { isFallbackAdapter?: boolean }).isFallbackAdapter === true,
    f16: device.features.has('shader-f16'),
    subgroups: device.features.has('subgroups'),
    timestampQuery: device.features.has('timestamp-query'),
    limits: {
      maxStorageBufferBindingSize: device.limits.maxStorageBufferBindingSize,
      maxBufferSize: device.limits.maxBufferSize,
      maxComputeWorkgroupStorageSize: device.limits.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: device.limits.maxComputeInvocationsPerWorkgroup,
      maxComputeWorkgroupsPerDimension: device.limits.maxComputeWorkgroupsPerDimension,
      maxStorageBuffersPerShaderStage: device.limits.maxStorageBuffersPerShaderStage
    }
  }
  return { adapter, device, info }
}
