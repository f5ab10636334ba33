// The event stores of one PostgreSQL database (schema.ts): every stream of
// every server that names it in "eventStore". The same contract as the file
// store (eventlog.ts), decided by the same code (appendplan.ts):
//   - an append is one transaction: lock the stream's head row, look up the
//     group's eventIds, insert the new events, move the head, NOTIFY, commit;
//     its requests are answered only after COMMIT returns, so an answered
//     event is durable and a failed commit leaves nothing (a batch is whole or absent);
//   - the head row is the commit point: a view is (count, head) read from it,
//     and never reads past its count, so a view is a fixed snapshot;
//   - a server commits the requests that arrive while one transaction runs
//     in the next one (group commit), per stream;
//   - a database that is away answers 503 (connect.ts); nothing is retried
//     behind the client's back, and the pool connects again by itself.
import { eventIdsOf, knownEvent, planAppend, chainHash, type KnownEvent, type NewRecord } from '../appendplan.ts';
import { ApieError } from '../errors.ts';
import type { AppendRequest, AppendResult } from '../eventlog.ts';
import { damagedAt, EMPTY_HASH, eventIdOf, objectEventId, type StoredEvent } from '../eventreader.ts';
import type { EventStore, EventView, Streams } from '../eventstore.ts';
import { openDatabase, type Database, type Queryable } from './connect.ts';
import { CHANNEL, Listener } from './listener.ts';
import { checkSchema } from './schema.ts';

/** A stream's head row; no id while nothing was ever appended to it. */
interface Head {
  id?: number;
  count: number;
  head: string;
}

interface EventRow {
  seq: string;
  hash: Buffer;
  bytes: Buffer;
}

function stored(row: EventRow): StoredEvent {
  return { seq: Number(row.seq), hash: row.hash.toString('hex'), json: row.bytes };
}

async function readHead(q: Pick<Database, 'query'>, name: string): Promise<Head> {
  const [row] = await q.query<{ id: number; count: string; head: string }>('SELECT id, count, head FROM apie_streams WHERE name = $1', [name]);
  return row ? { id: row.id, count: Number(row.count), head: row.head } : { count: 0, head: EMPTY_HASH };
}

/** Events first..last of a stream, checked to be all there. */
async function readEvents(db: Pick<Database, 'query'>, stream: number, first: number, last: number): Promise<StoredEvent[]> {
  const rows = await db.query<EventRow>('SELECT seq, hash, bytes FROM apie_events WHERE stream = $1 AND seq BETWEEN $2 AND $3 ORDER BY seq', [stream, first, last]);
  const events = rows.map(stored);
  events.forEach((e, i) => {
    if (e.seq !== first + i) throw damagedAt(first + i, 'the event is missing from the database');
  });
  if (events.length !== last - first + 1) throw damagedAt(first + events.length, 'the event is missing from the database');
  return events;
}

/** A fixed snapshot of a stream: what its head row said when it was taken. */
class PgView implements EventView {
  readonly count: number;
  readonly head: string;
  private readonly db: Database;
  private readonly stream?: number;
  // Events a lookup already brought back (GET /events/H reads what it looked up).
  private readonly found = new Map<number, StoredEvent>();

  private readonly cache: EventCache;

  constructor(db: Database, head: Head, cache: EventCache) {
    this.db = db;
    this.cache = cache;
    this.stream = head.id;
    this.count = head.count;
    this.head = head.head;
  }

  async seqOfHash(hash: string): Promise<number | undefined> {
    if (this.count === 0) return undefined;
    const cached = this.cache.get(hash);
    if (cached) return cached.seq <= this.count ? this.remember(cached) : undefined;
    const [row] = await this.db.query<EventRow>('SELECT seq, hash, bytes FROM apie_events WHERE stream = $1 AND hash = $2 AND seq <= $3', [this.stream, Buffer.from(hash, 'hex'), this.count]);
    return row && this.remember(stored(row));
  }

  async seqOfEventId(eventId: string): Promise<number | undefined> {
    if (this.count === 0) return undefined;
    const [row] = await this.db.query<EventRow>(
      'SELECT seq, hash, bytes FROM apie_events WHERE stream = $1 AND event_id = $2 AND seq <= $3 ORDER BY seq LIMIT 1', [this.stream, eventId, this.count],
    );
    return row && this.remember(stored(row));
  }

  async read(seq: number): Promise<StoredEvent> {
    this.check(seq, seq);
    return this.found.get(seq) ?? (await readEvents(this.db, this.stream!, seq, seq))[0];
  }

  async readRange(first: number, last: number): Promise<StoredEvent[]> {
    if (last < first) return [];
    this.check(first, last);
    return readEvents(this.db, this.stream!, first, last);
  }

  // Events committed after the snapshot are in the table too: never read them through it.
  private check(first: number, last: number): void {
    if (first < 1 || last > this.count) throw new ApieError('internal', `events ${first}..${last} are outside a view of ${this.count}`);
  }

  close(): void {}

  private remember(event: StoredEvent): number {
    this.found.set(event.seq, event);
    this.cache.set(event);
    return event.seq;
  }
}

// Events looked up by hash, most recent last: a committed event never
// changes, so a server answers GET /events/H again without the lookup.
class EventCache {
  private readonly events = new Map<string, StoredEvent>();

  get(hash: string): StoredEvent | undefined {
    const event = this.events.get(hash);
    if (event) {
      this.events.delete(hash);
      this.events.set(hash, event);
    }
    return event;
  }

  set(event: StoredEvent): void {
    if (this.events.has(event.hash)) return;
    this.events.set(event.hash, event);
    if (this.events.size > EVENT_CACHE) this.events.delete(this.events.keys().next().value!);
  }
}

// Events kept by each stream of a server (a CGI request keeps none past itself).
const EVENT_CACHE = 10_000;

// Locks the stream's head row for the transaction, creating it on the first append.
async function lockHead(q: Queryable, name: string): Promise<Head & { id: number }> {
  const select = () => q.query<{ id: number; count: string; head: string }>('SELECT id, count, head FROM apie_streams WHERE name = $1 FOR UPDATE', [name]);
  let { rows } = await select();
  if (!rows.length) {
    // Two first appends at once: one inserts, the other waits for it and then finds its row.
    await q.query('INSERT INTO apie_streams (name, count, head) VALUES ($1, 0, $2) ON CONFLICT (name) DO NOTHING', [name, EMPTY_HASH]);
    ({ rows } = await select());
  }
  const [row] = rows;
  return { id: row.id, count: Number(row.count), head: row.head };
}

// The events already stored under these eventIds (the first of each, as the file store finds it).
async function knownEvents(q: Queryable, stream: number, ids: string[]): Promise<Map<string, KnownEvent>> {
  const known = new Map<string, KnownEvent>();
  if (!ids.length) return known;
  const { rows } = await q.query<EventRow & { event_id: string }>(
    'SELECT DISTINCT ON (event_id) event_id, seq, hash, bytes FROM apie_events WHERE stream = $1 AND event_id = ANY($2) ORDER BY event_id, seq', [stream, ids],
  );
  for (const row of rows) known.set(row.event_id, knownEvent(stored(row)));
  return known;
}

/**
 * Inserts records after the locked head and moves it, in one statement; the
 * NOTIFY in it is sent when the transaction commits.
 */
export async function writeRecords(q: Queryable, name: string, head: Head & { id: number }, records: NewRecord[]): Promise<Head & { id: number }> {
  const seqs = records.map((_, i) => head.count + i + 1);
  await q.query(
    `WITH added AS (
       INSERT INTO apie_events (stream, seq, hash, event_id, bytes)
       SELECT $1, seq, hash, event_id, bytes FROM unnest($2::bigint[], $3::bytea[], $4::text[], $5::bytea[]) AS r (seq, hash, event_id, bytes)
     ), moved AS (
       UPDATE apie_streams SET count = $6, head = $7 WHERE id = $1
     )
     SELECT pg_notify('${CHANNEL}', $8)`,
    [head.id, seqs, records.map((r) => Buffer.from(r.hash, 'hex')), records.map((r) => eventIdOf(r.json) ?? null), records.map((r) => r.json),
      head.count + records.length, records[records.length - 1].hash, name],
  );
  return { id: head.id, count: head.count + records.length, head: records[records.length - 1].hash };
}

// Events per transaction of a raw append.
const RAW_SLICE = 5000;

interface Pending {
  request: AppendRequest;
  resolve: (result: AppendResult) => void;
  reject: (err: unknown) => void;
}

/** One stream's log in the database. */
export class PgStore implements EventStore {
  readonly name: string;
  private readonly db: Database;
  private readonly listener: Listener;
  private readonly ready: () => Promise<void>;
  private readonly cache = new EventCache();
  private queue: Pending[] = [];
  private committing = false;

  constructor(name: string, db: Database, listener: Listener, ready: () => Promise<void>) {
    this.name = name;
    this.db = db;
    this.listener = listener;
    this.ready = ready;
  }

  async view(): Promise<EventView> {
    await this.ready();
    return new PgView(this.db, await readHead(this.db, this.name), this.cache);
  }

  /** Nothing in flight: the store may be forgotten. */
  idle(): boolean {
    return !this.committing && this.queue.length === 0;
  }

  append(request: AppendRequest): Promise<AppendResult> {
    return new Promise((resolve, reject) => {
      this.queue.push({ request, resolve, reject });
      if (!this.committing) void this.commit();
    });
  }

  // Requests that arrive while a transaction runs wait for the next one; each
  // is answered only after its own transaction has committed.
  private async commit(): Promise<void> {
    this.committing = true;
    while (this.queue.length) {
      const group = this.queue;
      this.queue = [];
      try {
        await this.ready();
        const requests = group.map((p) => p.request);
        const results = await this.db.transaction(async (q) => {
          const head = await lockHead(q, this.name);
          const known = await knownEvents(q, head.id, eventIdsOf(requests));
          const plan = planAppend(requests, head.count, head.head, (eventId) => known.get(eventId));
          if (plan.records.length) await writeRecords(q, this.name, head, plan.records);
          return plan.results;
        });
        group.forEach((p, i) => {
          const result = results[i];
          if (result instanceof ApieError) p.reject(result);
          else p.resolve(result);
        });
      } catch (err) {
        group.forEach((p) => p.reject(err));
      }
    }
    this.committing = false;
  }

  /** Appends exact bytes after `after`, one transaction per slice (an interrupted import or migration keeps what it committed). */
  async appendRaw(after: string, jsons: Buffer[]): Promise<{ count: number; hash: string }> {
    await this.ready();
    let head = await readHead(this.db, this.name);
    if (jsons.length === 0 && head.head !== after) throw new ApieError('conflict', `the stream ${this.name} ends at ${head.head}, the events continue ${after}`);
    let prev = after;
    for (let i = 0; i < jsons.length; i += RAW_SLICE) {
      const expected = prev;
      const records = jsons.slice(i, i + RAW_SLICE).map((json) => ({ hash: (prev = chainHash(prev, json)), json }));
      head = await this.db.transaction(async (q) => {
        const locked = await lockHead(q, this.name);
        if (locked.head !== expected) throw new ApieError('conflict', `the stream ${this.name} ends at ${locked.head}, the events continue ${expected}`);
        return writeRecords(q, this.name, locked, records);
      });
    }
    return { count: head.count, hash: head.head };
  }

  async waitForMore(known: number, ms: number, signal?: AbortSignal): Promise<boolean> {
    await this.ready();
    return this.listener.wait(this.name, async () => (await readHead(this.db, this.name)).count > known, ms, signal);
  }

  /** Recomputes the whole chain from the stored bytes; throws 'damaged' naming the first bad event. */
  async verify(): Promise<{ count: number; hash: string }> {
    await this.ready();
    const head = await readHead(this.db, this.name);
    let prev = EMPTY_HASH;
    for (let first = 1; first <= head.count; first += 4096) {
      const last = Math.min(head.count, first + 4095);
      const rows = await this.db.query<EventRow & { event_id: string | null }>(
        'SELECT seq, hash, event_id, bytes FROM apie_events WHERE stream = $1 AND seq BETWEEN $2 AND $3 ORDER BY seq', [head.id, first, last],
      );
      if (rows.length !== last - first + 1) throw damagedAt(first + rows.findIndex((r, i) => Number(r.seq) !== first + i), 'the event is missing from the database');
      for (const row of rows) {
        const e = stored(row);
        if (chainHash(prev, e.json) !== e.hash) throw damagedAt(e.seq, 'hash does not match the previous hash and the stored bytes');
        if ((objectEventId(e.json, e.seq) ?? null) !== row.event_id) throw damagedAt(e.seq, 'the stored eventId column names another eventId');
        prev = e.hash;
      }
    }
    if (prev !== head.head) throw damagedAt(head.count, 'the stream\'s head row names another last hash');
    return { count: head.count, hash: prev };
  }
}

// Stores kept at once; idle ones beyond this are forgotten, least recently used first.
const MAX_OPEN = 1024;

/** The streams of one database, for a server (`server`: a pool, the schema checked once, listening kept) or one request. */
export class PgStreams implements Streams {
  private readonly db: Database;
  private readonly listener: Listener;
  private readonly stores = new Map<string, PgStore>();
  private checked?: Promise<void>;
  private readonly server: boolean;

  constructor(url: string, server: boolean) {
    this.server = server;
    // A CGI request or a command needs one connection; a server, a few per worker.
    this.db = openDatabase(url, server ? 8 : 1);
    this.listener = new Listener(this.db, server);
  }

  stream(name: string): PgStore {
    let store = this.stores.get(name);
    if (store) {
      this.stores.delete(name);
    } else {
      store = new PgStore(name, this.db, this.listener, () => this.ready());
      for (const [old, s] of this.stores) {
        if (this.stores.size < MAX_OPEN) break;
        if (s.idle()) this.stores.delete(old);
      }
    }
    this.stores.set(name, store);
    return store;
  }

  async names(): Promise<string[]> {
    await this.ready();
    return (await this.db.query<{ name: string }>('SELECT name FROM apie_streams WHERE count > 0 ORDER BY name')).map((r) => r.name);
  }

  /** The database these streams live in (migrate). */
  get database(): Database {
    return this.db;
  }

  /** Ends the connections. */
  async close(): Promise<void> {
    this.listener.close();
    await this.db.end();
  }

  // A server refuses a database without this Apie's schema once, at its first
  // request (again after a failure); a single request finds out from the error.
  private ready(): Promise<void> {
    if (!this.server) return Promise.resolve();
    this.checked ??= checkSchema(this.db).catch((err) => {
      this.checked = undefined;
      throw err;
    });
    return this.checked;
  }
}
