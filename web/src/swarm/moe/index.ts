/**
 * MoE experts across peers (Learning@home-style DMoE) — the module's public face.
 *
 * - ExpertRole: host experts, given or chosen by the scheduler (placement.ts), with records
 *   refreshed, re-checked and withdrawn; ExpertHost / RemoteExperts: the `expert` protocol's two
 *   sides; CoSelectionStats + summary.ts: the router's co-selection counts and the compact summary
 *   block servers publish in the swarm CRDT.
 *
 * A page (or any TypeScript caller) hosting experts chosen by the scheduler:
 *
 * ```ts
 * const role = new ExpertRole({
 *   transport, directory, model: 'byte-mixtral', hiddenSize: config.hiddenSize, numExperts: config.numExperts,
 *   layers: [0, 1, 2], slots: 2,
 *   loadLayer: async l => await loadExpertLayer(source, backend, 'byte-mixtral', l),
 *   affinity: async () => affinityFromPeers(await swarm.doc.peers(), 'byte-mixtral', config.numLayers, config.numExperts).affinity,
 *   onAnnounce: () => { void swarm.updateSelf({ experts: { model: 'byte-mixtral', state: role.state, hosted: formatPlacement(role.placement) } }) }
 * })
 * await role.start()   // …and role.stop() when leaving (announces OFFLINE)
 * ```
 */
export { CoSelectionStats, placeExperts } from './coselection.ts'
export { ExpertHost, type ExpertRunner } from './expert-host.ts'
export { ExpertRole, type ExpertRoleOptions, type LoadedExpertLayer } from './expert-role.ts'
export { loadExpertLayer, measureExpertThroughput } from './model-layers.ts'
export { chooseExperts, formatPlacement, placementQuality, proposeMove, type Placement } from './placement.ts'
export { RemoteExperts, type RemoteExpertsOptions } from './remote-experts.ts'
export { affinityFromPeers, affinityFromStats, parseSummary, summarize, type Affinity, type CoSelectionSummary } from './summary.ts'
