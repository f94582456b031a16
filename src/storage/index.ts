// The durable storage layer's interface for the engine (docs/durability.md): lock the data
// directory, recover it, then one log writer per thread and one compactor.
//
//   main thread, before listening:  lockDataDir -> recover -> load into the core -> startCompaction
//   every thread (main = 0, workers 1..): openLog -> append*() -> commit() before each reply
//   stop: writers close(), compactor stop(), lock release()

export { lockDataDir, type DataDirLock } from './lock.ts';
export { recover, type Recovery, type RecoveredTopic, type RecoveredQueue, type RecoveredDedupId, type DelayedChunk, type RecoverOptions, type RecoveryProgress, type RecoveryDamage } from './recovery.ts';
export {
  openLog, LogWriter, parseFsyncPolicy, FSYNC_POLICIES, DEFAULT_FSYNC_POLICY, DEFAULT_MAX_SEGMENT_BYTES,
  type FsyncPolicy, type LogOptions, type LogStats,
} from './log.ts';
export { startCompaction, Compactor, type CompactionOptions, type CompactionPass, type CompactionStats } from './compaction.ts';
