/**
 * Node built-ins for code the page bundles but runs only under Node (a model directory on disk,
 * the shaders folder, the Vulkan driver list, the Brown corpus). The name is a variable the
 * bundler does not follow: a literal `import('node:fs')` makes Vite stub the module for the
 * browser and warn on every build ("externalized for browser compatibility"), though the page
 * never reaches the call. A built-in that page code really needed would fail at that call, named.
 */
interface NodeBuiltins {
  'node:fs': typeof import('node:fs')
  'node:fs/promises': typeof import('node:fs/promises')
  'node:module': typeof import('node:module')
  'node:path': typeof import('node:path')
}

/** `await nodeBuiltin('node:fs/promises')`: the module, under Node. */
export async function nodeBuiltin<K extends keyof NodeBuiltins> (name: K): Promise<NodeBuiltins[K]> {
  return await import(/* @vite-ignore */ name) as NodeBuiltins[K]
}
