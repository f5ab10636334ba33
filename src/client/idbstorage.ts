// Storage in IndexedDB, the browsers' default: each pending event is its own
// record (so two tabs adding events never overwrite each other's), kept in
// insertion order by an auto-increment key; each stream's replica record is
// one value. A change is one transaction with strict durability.
import type { PendingEvent, ReplicaRecord, ClientStorage } from './types.ts';

// The little of IndexedDB used here, declared here: the project is typed
// against Node, and the DOM library would change the types of its globals.
interface IDBRequest<T> {
  result: T;
  error: Error | null;
  onsuccess: (() => void) | null;
  onerror: (() => void) | null;
}
interface IDBOpenRequest extends IDBRequest<IDBDatabase> {
  onupgradeneeded: (() => void) | null;
}
interface IDBIndex {
  getAll(key: unknown): IDBRequest<unknown[]>;
  getAllKeys(key: unknown): IDBRequest<unknown[]>;
}
interface IDBObjectStore {
  add(value: unknown): void;
  put(value: unknown, key: string): void;
  get(key: string): IDBRequest<unknown>;
  delete(key: unknown): void;
  index(name: string): IDBIndex;
  createIndex(name: string, keyPath: string | string[]): void;
}
interface IDBTransaction {
  objectStore(name: string): IDBObjectStore;
  error: Error | null;
  oncomplete: (() => void) | null;
  onerror: (() => void) | null;
  onabort: (() => void) | null;
}
interface IDBDatabase {
  transaction(stores: string[], mode: 'readonly' | 'readwrite', options?: { durability: 'strict' }): IDBTransaction;
  createObjectStore(name: string, options?: { autoIncrement: boolean }): IDBObjectStore;
}
declare const indexedDB: { open(name: string, version: number): IDBOpenRequest };

interface Row {
  key: string;
  eventId: string;
  event: PendingEvent;
}

function done(tx: IDBTransaction): Promise<void> {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = tx.onabort = () => reject(tx.error ?? new Error('IndexedDB transaction aborted'));
  });
}

function result<T>(req: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

/** Storage in the browser's IndexedDB database `name`. */
export function indexedDbStorage(name = 'apie'): ClientStorage {
  let db: Promise<IDBDatabase> | undefined;
  const open = () => (db ??= (() => {
    const req = indexedDB.open(name, 1);
    req.onupgradeneeded = () => {
      const pending = req.result.createObjectStore('pending', { autoIncrement: true });
      pending.createIndex('key', 'key');
      pending.createIndex('id', ['key', 'eventId']);
      req.result.createObjectStore('replicas');
    };
    return result(req);
  })());

  return {
    async load(key) {
      const tx = (await open()).transaction(['pending', 'replicas'], 'readonly');
      const rows = result(tx.objectStore('pending').index('key').getAll(key) as IDBRequest<Row[]>);
      const replica = result(tx.objectStore('replicas').get(key) as IDBRequest<ReplicaRecord | undefined>);
      return { pending: (await rows).map((r) => r.event), replica: await replica };
    },
    async save(key, change) {
      const tx = (await open()).transaction(['pending', 'replicas'], 'readwrite', { durability: 'strict' });
      const pending = tx.objectStore('pending');
      for (const eventId of change.remove ?? []) {
        const req = pending.index('id').getAllKeys([key, eventId]);
        req.onsuccess = () => req.result.forEach((k) => pending.delete(k));
      }
      for (const event of change.add ?? []) pending.add({ key, eventId: event.eventId, event } satisfies Row);
      if (change.replica) tx.objectStore('replicas').put(change.replica, key);
      await done(tx);
    },
  };
}
