// Storage in memory (Node's default), and the one way a change is applied to
// a stream's local record, shared by the storages that keep records as values.
import type { PendingEvent, ReplicaRecord, ClientStorage, StorageChange } from './types.ts';

/** @internal */
export interface LocalRecord {
  pending: PendingEvent[];
  replica?: ReplicaRecord;
}

/** Applies a change to a record: removals, then additions at the end, then the replica. @internal */
export function applyChange(record: LocalRecord, change: StorageChange): LocalRecord {
  const removed = new Set(change.remove ?? []);
  return {
    pending: [...record.pending.filter((e) => !removed.has(e.eventId)), ...(change.add ?? [])],
    replica: change.replica ?? record.replica,
  };
}

/** Keeps everything in memory: lost when the process ends. */
export function memoryStorage(): ClientStorage {
  const records = new Map<string, LocalRecord>();
  return {
    load: async (key) => records.get(key) ?? { pending: [] },
    save: async (key, change) => {
      records.set(key, applyChange(records.get(key) ?? { pending: [] }, change));
    },
  };
}
