// The shapes the client hands to apps and takes from them.

/** An event as the app asks for it to be appended. */
export interface NewEvent {
  eventType: string;
  body: unknown;
  /** Generated (UUID v4) when absent; the same id on every retry is what makes a retry harmless. */
  eventId?: string;
}

/** An event queued locally, not yet acknowledged by the server. */
export interface PendingEvent {
  eventId: string;
  eventType: string;
  body: unknown;
}

/** An event as the server stores it. */
export interface StoredEvent extends PendingEvent {
  createdBy: string;
  createdAt: string;
  hash: string;
}

/** What a reducer sees: a stored event, or a pending one (which has no `hash` yet). */
export type AnyEvent = StoredEvent | PendingEvent;

export type Reducer<S> = (state: S, event: AnyEvent) => S;

/** The snapshot of one cached projection: its state folded over the events up to `head`. */
export interface ViewSnapshot {
  head: string;
  state: unknown;
}

/** What the client keeps of a stream between runs, besides its pending events. */
export interface ReplicaRecord {
  /** The last acknowledged event the client has folded into its projections. */
  head: string;
  /** Snapshots of projections opened with a `cache` name. */
  views: Record<string, ViewSnapshot>;
}

/** One change to a stream's local record, applied atomically and durably. */
export interface StorageChange {
  /** Events to add at the end of the queue. */
  add?: PendingEvent[];
  /** eventIds to take out of the queue. */
  remove?: string[];
  /** The replica record to keep from now on. */
  replica?: ReplicaRecord;
}

/**
 * Where the client keeps pending events (and projection snapshots) so they
 * survive a reload or a crash. `key` names one stream of one user on one Apie.
 */
export interface ClientStorage {
  load(key: string): Promise<{ pending: PendingEvent[]; replica?: ReplicaRecord }>;
  save(key: string, change: StorageChange): Promise<void>;
}

export interface ApieOptions {
  /** The Apie's root URL: `https://example.com/cgi-bin/apie.cgi` or `http://127.0.0.1:8000`. */
  url: string;
  /** Who: with `password` for Basic credentials (exchanged for a token), else only the scope of local storage. */
  user?: string;
  password?: string;
  /** A bearer token from `POST /auth/token` (or `login()`). */
  token?: string;
  /** Default: IndexedDB in browsers, memory in Node. */
  storage?: ClientStorage;
  /** Default: the global fetch. */
  fetch?: typeof fetch;
  /** Told of errors of syncs the client started on its own (after `append`, on reconnect). */
  onError?: (error: Error) => void;
}

export interface SyncResult {
  /** Events of this client acknowledged during the sync. */
  pushed: number;
  /** Events of others fetched during the sync. */
  pulled: number;
  /** The last hash the client knows. */
  head: string;
}

export interface ProjectionOptions<S> {
  /** Keep the state between runs under this name (change it when the reducer changes); it must be storable (JSON). */
  cache?: string;
  /** Called whenever `state` changes. */
  onChange?: (state: S) => void;
}

export interface Projection<S> {
  /** The reducer folded over acknowledged events, then pending ones. */
  readonly state: S;
  /** Resolves once the projection has caught up with the server for the first time. */
  readonly ready: Promise<void>;
  close(): void;
}

export interface Uploaded {
  hash: string;
  size: number;
  url: string;
}
