// What one commit appends, decided the same way by every event store (the
// files in eventlog.ts, PostgreSQL in pgstore/): each request of a group in
// order, against the log's head and the events already stored under its
// eventIds. The stores differ only in how they find those and make the
// records durable. Knows nothing of HTTP or storage.
import { isDeepStrictEqual } from 'node:util';
import { ApieError } from './errors.ts';
import type { AppendRequest, AppendResult, NewEvent } from './eventlog.ts';
import type { StoredEvent } from './eventreader.ts';

/** The chain: H(n) = sha256(H(n-1) + "\n" + J(n)), in lowercase hex. */
export function chainHash(prev: string, json: Uint8Array): string {
  // node:crypto is loaded here, at the first hash: reads never hash.
  return process.getBuiltinModule('node:crypto').createHash('sha256').update(`${prev}\n`).update(json).digest('hex');
}

/** A record to append: its hash and exact JSON bytes. */
export interface NewRecord {
  hash: string;
  json: Buffer;
}

/** An event found in the log by its eventId, with the content it was stored with. */
export interface KnownEvent {
  stored: StoredEvent;
  event: { eventType: unknown; body: unknown };
}

/** A known event from its stored bytes. */
export function knownEvent(stored: StoredEvent): KnownEvent {
  return { stored, event: JSON.parse(stored.json.toString('utf8')) };
}

/** The eventIds a group of requests names: what a store looks up before planning. */
export function eventIdsOf(requests: AppendRequest[]): string[] {
  return [...new Set(requests.flatMap((r) => r.events.map((e) => e.eventId)))];
}

/**
 * Decides the requests of one commit in order, after `count` events ending at
 * `last`: one result per request (its stored events, new or found again for a
 * retry) or its refusal ('conflict', 'precondition-failed', 'bad-request'),
 * and the records to append. A refused request leaves nothing in the commit;
 * the others go ahead. `lookup` finds an event already in the log by eventId.
 */
export function planAppend(
  requests: AppendRequest[], count: number, last: string, lookup: (eventId: string) => KnownEvent | undefined,
): { results: (AppendResult | ApieError)[]; records: NewRecord[] } {
  const results: (AppendResult | ApieError)[] = [];
  const records: NewRecord[] = [];
  // Events appended by earlier requests of this commit, by eventId.
  const pending = new Map<string, KnownEvent>();
  const find = (eventId: string) => pending.get(eventId) ?? lookup(eventId);
  for (const { events, ifMatch } of requests) {
    // Whatever one request throws is its own answer: it must not fail the others of the commit.
    const mark = records.length;
    const lastBefore = last;
    try {
      const retry = retried(events, find);
      if (retry) {
        results.push(retry instanceof ApieError ? retry : { outcome: 'existing', events: retry });
        continue;
      }
      if (ifMatch && !ifMatch.includes('*') && !ifMatch.includes(last)) {
        results.push(new ApieError('precondition-failed', `the log's last hash is ${last}, not the one in If-Match`, { data: { lastHash: last } }));
        continue;
      }
      const stored: StoredEvent[] = [];
      for (const event of events) {
        const json = Buffer.from(JSON.stringify({
          eventId: event.eventId, eventType: event.eventType, body: event.body, createdBy: event.createdBy, createdAt: event.createdAt,
        }));
        const hash = chainHash(last, json);
        const one = { seq: count + records.length + 1, hash, json };
        records.push({ hash, json });
        pending.set(event.eventId, { stored: one, event });
        stored.push(one);
        last = hash;
      }
      results.push({ outcome: 'appended', events: stored });
    } catch (error) {
      // Nothing of this request stays in the commit.
      for (const r of records.splice(mark)) for (const [id, p] of pending) if (p.stored.hash === r.hash) pending.delete(id);
      last = lastBefore;
      results.push(error instanceof ApieError ? error : new ApieError('internal', 'internal error', { cause: error }));
    }
  }
  return { results, records };
}

// What a request whose eventIds are already stored gets: the stored events
// when all of them are, with the same content (a harmless retry); a refusal
// when only some are, or with other content, or when an eventId is in it
// twice. Undefined for a request that is new.
function retried(events: NewEvent[], find: (eventId: string) => KnownEvent | undefined): StoredEvent[] | ApieError | undefined {
  const ids = new Set<string>();
  for (const e of events) {
    if (ids.has(e.eventId)) return new ApieError('bad-request', `eventId ${e.eventId} appears twice in the batch`);
    ids.add(e.eventId);
  }
  const found = events.map((e) => find(e.eventId));
  const known = found.filter((f) => f !== undefined).length;
  if (known === 0) return undefined;
  if (known < events.length) {
    return new ApieError('conflict', `${known} of the batch's ${events.length} eventIds are already in the log: a batch is retried whole or not at all`);
  }
  const other = events.findIndex((e, i) => found[i]!.event.eventType !== e.eventType || !isDeepStrictEqual(found[i]!.event.body, e.body));
  if (other >= 0) return new ApieError('conflict', `eventId ${events[other].eventId} is already in the log with other content`);
  return found.map((f) => f!.stored);
}
