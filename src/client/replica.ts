// One stream as this client knows it: the acknowledged events up to `head`
// (folded into its projections, never kept in memory) and the pending events
// of this client, in the order they were made.
//
// The rules that make every client converge on one log without duplicates:
// - `head` only moves along the server's chain: by events read right after it
//   (feed), or by an append answered right after it, which follows() checks
//   against the hash chain. So each projection folds each stored event once,
//   in log order, whichever way (pull, live feed, push answer) it arrived.
// - A pending event keeps its eventId from the moment it is queued. A push
//   whose answer is lost is retried with that id, and the server answers a
//   retry with the event it already stored; an event read from the log whose
//   eventId is pending is that event, acknowledged.
// - Pushes carry If-Match: head. A 412 means others appended: read their
//   events (the projections re-run: acknowledged, then pending), then push again.
// - Each change to the queue and the snapshot is one atomic storage write, made
//   before append() returns: a reload or crash loses nothing that was queued.
import { eventsPath, ApieClientError, expectOk, isTransient, type Transport } from './transport.ts';
import { EMPTY_HASH, follows } from './chain.ts';
import { follow } from './live.ts';
import type { PendingEvent, Reducer, ReplicaRecord, ClientStorage, StoredEvent, SyncResult, ViewSnapshot } from './types.ts';

const PAGE = 1000;
const BATCH = 100;
const MAX_BACKOFF_MS = 30_000;
// Refusals of one event: it can never be stored as it is, so it leaves the queue.
const REFUSED = new Set([400, 409, 413]);

/** A projection's state over the acknowledged events up to `head`. */
export class View<S> {
  head = EMPTY_HASH;
  acked: S;
  attached = false;
  closed = false;
  readonly reducer: Reducer<S>;
  readonly initial: S;
  readonly cache: string | undefined;
  private readonly onChange: ((state: S) => void) | undefined;
  private readonly replica: Replica;
  private current?: { state: S; pending: readonly PendingEvent[] };

  constructor(reducer: Reducer<S>, initial: S, cache: string | undefined, onChange: ((state: S) => void) | undefined, replica: Replica) {
    this.reducer = reducer;
    this.acked = this.initial = initial;
    this.cache = cache;
    this.onChange = onChange;
    this.replica = replica;
  }

  /** The acknowledged state with the pending events folded on top, computed once per change. */
  get state(): S {
    const pending = this.replica.pending;
    if (this.current?.pending !== pending) this.current = { state: pending.reduce<S>(this.reducer, this.acked), pending };
    return this.current!.state;
  }

  fold(events: StoredEvent[]): void {
    this.acked = events.reduce(this.reducer, this.acked);
    this.head = events[events.length - 1].hash;
  }

  reset(): void {
    this.acked = this.initial;
    this.head = EMPTY_HASH;
  }

  changed(): void {
    this.current = undefined;
    if (!this.closed) this.onChange?.(this.state);
  }
}

export class Replica {
  head = EMPTY_HASH;
  /** Replaced (never changed in place) on every change, so views see when to re-fold. */
  pending: readonly PendingEvent[] = [];
  private snapshots: Record<string, ViewSnapshot> = {};
  private readonly views = new Set<View<any>>();
  private readonly path: string;
  private loading?: Promise<void>;
  private saving: Promise<void> = Promise.resolve();
  private syncing: Promise<unknown> = Promise.resolve();
  private pulling?: Promise<number>;
  private kicking?: Promise<void>;
  private kickAgain = false;
  private live?: { stop: () => void };
  private caughtUp?: Promise<void>;
  private readonly closing = new AbortController();

  private readonly transport: Transport;
  private readonly storage: ClientStorage;
  private readonly key: string;
  readonly stream: string;
  private readonly onError: (err: Error) => void;
  private readonly batches: () => Promise<boolean>;

  constructor(transport: Transport, storage: ClientStorage, key: string, stream: string, onError: (err: Error) => void, batches: () => Promise<boolean>) {
    this.transport = transport;
    this.storage = storage;
    this.key = key;
    this.stream = stream;
    this.onError = onError;
    this.batches = batches;
    this.path = eventsPath(stream);
  }

  /** Reads the queue and the snapshot from storage, once. */
  load(): Promise<void> {
    this.loading ??= this.storage.load(this.key).then(({ pending, replica }) => {
      this.pending = [...pending, ...this.pending];
      if (replica) {
        this.head = replica.head;
        this.snapshots = replica.views;
      }
    });
    return this.loading;
  }

  // ---- the acknowledged log ---------------------------------------------

  /**
   * Takes events read from the log right after `from`: those past `head` are
   * folded into the attached views; those already seen are skipped.
   * Returns how many were new.
   */
  feed(from: string, events: StoredEvent[]): number {
    let at = from;
    const fresh: StoredEvent[] = [];
    for (const e of events) {
      if (at === this.head) {
        fresh.push(e);
        this.head = e.hash;
      }
      at = e.hash;
    }
    if (!fresh.length) return 0;
    const ids = new Set(fresh.map((e) => e.eventId));
    const acknowledged = this.pending.filter((p) => ids.has(p.eventId)).map((p) => p.eventId);
    if (acknowledged.length) this.pending = this.pending.filter((p) => !ids.has(p.eventId));
    for (const v of this.views) if (v.attached) v.fold(fresh);
    this.save({ remove: acknowledged, replica: this.record() });
    this.changed();
    return fresh.length;
  }

  /** Reads what follows `head`, page by page, until the end (one read at a time). */
  pull(): Promise<number> {
    this.pulling ??= (async () => {
      let count = 0;
      for (;;) {
        const after = this.head;
        const res = await this.transport.request('GET', `${this.path}?after=${after}&limit=${PAGE}`, { signal: this.closing.signal });
        if (res.status === 404 && after !== EMPTY_HASH) {
          // The server no longer knows our head: its log was replaced. Start over;
          // pending events stay queued and will be pushed onto the new log.
          await res.body?.cancel();
          this.reset();
          continue;
        }
        const events = (await expectOk(res)) as StoredEvent[];
        count += this.feed(after, events);
        if (events.length < PAGE) return count;
      }
    })().finally(() => (this.pulling = undefined));
    return this.pulling;
  }

  private reset(): void {
    this.head = EMPTY_HASH;
    this.snapshots = {};
    for (const v of this.views) v.reset();
    this.save({ replica: this.record() });
    this.changed();
  }

  /** What is kept between runs: the head, and each cached view's snapshot. */
  private record(): ReplicaRecord {
    const views = { ...this.snapshots };
    for (const v of this.views) if (v.cache !== undefined && v.attached) views[v.cache] = { head: v.head, state: v.acked };
    this.snapshots = views;
    return { head: this.head, views };
  }

  // Storage writes happen one after another, in the order the changes were made.
  private save(change: Parameters<ClientStorage['save']>[1]): Promise<void> {
    const done = this.saving.then(() => this.storage.save(this.key, change));
    this.saving = done.catch((err) => this.onError(err));
    return done;
  }

  private changed(): void {
    for (const v of this.views) v.changed();
  }

  // ---- pending events -----------------------------------------------------

  /**
   * Queues events durably and shows them in every view once stored: what a
   * user sees survives a reload at once (a page unloaded in the middle of a
   * storage write loses that write).
   */
  async enqueue(events: PendingEvent[]): Promise<void> {
    await this.load();
    this.pending = [...this.pending, ...events];
    try {
      await this.save({ add: events });
    } finally {
      this.changed();
    }
  }

  private drop(event: PendingEvent): void {
    this.pending = this.pending.filter((p) => p !== event);
    this.save({ remove: [event.eventId] });
    this.changed();
  }

  /** Pushes the queue in order (one sync at a time); see the rules at the top. */
  sync(): Promise<SyncResult> {
    const run = this.syncing.then(() => this.push());
    this.syncing = run.catch(() => {});
    return run;
  }

  private async push(): Promise<SyncResult> {
    await this.load();
    const result = { pushed: 0, pulled: 0, head: this.head };
    let singles = 0;
    let answered = false;
    while (this.pending.length) {
      // Whether the server takes batches is asked only once it has answered:
      // the question must not fail for being offline.
      const batched = answered && singles === 0 && this.pending.length > 1 && (await this.batches());
      const batch = this.pending.slice(0, batched ? BATCH : 1);
      singles = Math.max(0, singles - 1);
      const head = this.head;
      const res = await this.transport.request('POST', this.path, {
        headers: { 'Content-Type': 'application/json', 'If-Match': `"${head}"` },
        body: JSON.stringify(batched ? batch : batch[0]),
        signal: this.closing.signal,
      });
      answered = true;
      if (res.status === 412) {
        await res.body?.cancel();
        result.pulled += await this.pull();
        continue;
      }
      if (!res.ok && batched) {
        // Which event is to blame is for single pushes to find out.
        await res.body?.cancel();
        singles = batch.length;
        continue;
      }
      if (!res.ok) {
        const err = await expectOk(res, batch[0]).catch((e: ApieClientError) => e);
        if (REFUSED.has(res.status)) this.drop(batch[0]);
        throw err;
      }
      const answer = (await res.json()) as StoredEvent | StoredEvent[];
      const stored = Array.isArray(answer) ? answer : [answer];
      result.pushed += stored.length;
      if (this.head === head && chained(head, stored) && stored.every((e, i) => e.eventId === batch[i].eventId)) {
        this.feed(head, stored);
      } else {
        // Stored earlier, elsewhere in the log (a retry of an append whose
        // answer was lost to another tab): reading the log acknowledges it.
        result.pulled += await this.pull();
        for (const e of batch) if (this.pending.includes(e) && stored.some((s) => s.eventId === e.eventId)) this.drop(e);
      }
    }
    // Resolved only once what it acknowledged is off the queue in storage too:
    // a client started right after sync() must not push those events again.
    await this.saving;
    result.head = this.head;
    return result;
  }

  /**
   * Syncs in the background until the queue is empty, retrying with backoff
   * while offline; refusals go to onError.
   */
  kick(): void {
    if (this.kicking) {
      this.kickAgain = true;
      return;
    }
    this.kicking = (async () => {
      let backoff = 0;
      do {
        this.kickAgain = false;
        while (this.pending.length && !this.closing.signal.aborted) {
          try {
            await this.sync();
            backoff = 0;
          } catch (err) {
            if (this.closing.signal.aborted) return;
            if (err instanceof ApieClientError && err.event) {
              this.onError(err);
              continue;
            }
            if (!isTransient(err)) {
              this.onError(err as Error);
              return;
            }
            backoff = Math.min(MAX_BACKOFF_MS, backoff ? backoff * 2 : 1000);
            await this.transport.pause(backoff, this.closing.signal);
          }
        }
      } while (this.kickAgain);
    })().finally(() => (this.kicking = undefined));
  }

  // ---- projections and the live feed ------------------------------------

  /** Adds a view: shown at once from its snapshot and the queue, caught up, then kept live. */
  async open(view: View<any>): Promise<void> {
    await this.load();
    const snapshot = view.cache === undefined ? undefined : this.snapshots[view.cache];
    if (snapshot) {
      view.head = snapshot.head;
      view.acked = snapshot.state;
    }
    this.views.add(view);
    view.changed();
    this.startLive();
    if (this.pending.length) this.kick();
    await this.attach(view);
    await this.caughtUp;
  }

  close(view: View<any>): void {
    view.closed = true;
    this.views.delete(view);
    if (this.views.size === 0) {
      this.live?.stop();
      this.live = undefined;
      this.caughtUp = undefined;
    }
  }

  // Brings a view from its own head to the replica's, then folds it along with the rest.
  private async attach(view: View<any>): Promise<void> {
    let backoff = 0;
    while (!view.attached && !view.closed) {
      const target = this.head;
      if (view.head === target) {
        view.attached = true;
        this.save({ replica: this.record() });
        break;
      }
      try {
        let after = view.head;
        for (;;) {
          const res = await this.transport.request('GET', `${this.path}?after=${after}&to=${target}&limit=${PAGE}`, { signal: this.closing.signal });
          const events = res.status === 404 ? [] : ((await expectOk(res)) as StoredEvent[]);
          if (!events.length) {
            // A snapshot the server's log does not lead to: fold from the start.
            if (after !== target) view.reset();
            break;
          }
          view.fold(events);
          after = view.head;
          if (after === target) break;
        }
        view.changed();
        backoff = 0;
      } catch (err) {
        if (this.closing.signal.aborted || !isTransient(err)) throw err;
        backoff = Math.min(MAX_BACKOFF_MS, backoff ? backoff * 2 : 1000);
        await this.transport.pause(backoff, this.closing.signal);
      }
    }
  }

  // Catches up once (retrying while offline), then follows the stream.
  private startLive(): void {
    if (this.live) return;
    const live = { stop: () => {}, stopped: false };
    live.stop = () => (live.stopped = true);
    this.live = live;
    this.caughtUp = (async () => {
      let backoff = 0;
      while (!live.stopped) {
        try {
          await this.pull();
          break;
        } catch (err) {
          if (this.closing.signal.aborted) return;
          if (!isTransient(err)) this.onError(err as Error);
          backoff = Math.min(MAX_BACKOFF_MS, backoff ? backoff * 2 : 1000);
          await this.transport.pause(backoff, this.closing.signal);
        }
      }
      if (live.stopped) return;
      let at = this.head;
      const stop = follow(this.transport, this.stream, at, {
        onEvents: (events) => {
          this.feed(at, events);
          at = events[events.length - 1].hash;
          if (this.pending.length) this.kick();
        },
        onError: (err) => {
          // Our head is unknown to the server (its log was replaced): start over.
          if (live.stopped) return;
          this.live = undefined;
          if (err instanceof ApieClientError && err.status === 404) this.reset();
          else this.onError(err);
          if (this.views.size) this.startLive();
        },
      });
      live.stop = () => {
        live.stopped = true;
        stop();
      };
    })();
  }

  /** Stops the live feed and background syncs. */
  shutdown(): void {
    this.closing.abort();
    this.live?.stop();
    for (const v of this.views) v.closed = true;
  }
}

// Whether events form the chain right after `prev`.
function chained(prev: string, events: StoredEvent[]): boolean {
  return events.every((e, i) => follows(i ? events[i - 1].hash : prev, e));
}
