// The event streams over HTTP: checks input and permissions, maps the query
// and conditional headers onto a stream's log, and sends stored events with
// their hash. `/events…` is the stream `default`, `/streams/NAME/events…` any.
import { authorize, mayRead } from '../access.ts';
import { ApieError } from '../errors.ts';
import { eventInputProblem } from '../eventinput.ts';
import { EMPTY_HASH, type NewEvent, type StoredEvent } from '../eventlog.ts';
import { streamsOf, type EventStore, type EventView } from '../eventstore.ts';
import { hashHeaders, json, noneMatch, notModified, parseEtags, parseHash, readJson } from '../http.ts';
import { DEFAULT_STREAM, parseStreamName } from '../streams.ts';
import type { ApieRequest, ApieResponse, Context } from '../types.ts';
import { eventBody, seqOf, withHash } from './eventjson.ts';

const PARAMS = ['from', 'after', 'to', 'limit', 'wait'] as const;
// Events per read of the log when streaming a long answer.
const BATCH = 2000;
/** The most events one append request may carry. */
export const MAX_BATCH = 1000;

type Query = Partial<Record<(typeof PARAMS)[number], string>>;

function arrayBody(events: StoredEvent[]): Buffer[] {
  return events.flatMap((e, i) => (i ? [COMMA, ...withHash(e)] : withHash(e)));
}
const COMMA = Buffer.from(',');

// A long answer streams in batches, from a view of its own: the handler's is
// closed by the time the body is sent.
async function* streamEvents(store: EventStore, first: number, last: number): AsyncGenerator<Buffer> {
  const view = await store.view();
  try {
    yield Buffer.from('[');
    for (let from = first; from <= last; from += BATCH) {
      const part = arrayBody(await view.readRange(from, Math.min(last, from + BATCH - 1)));
      yield Buffer.concat(from === first ? part : [COMMA, ...part]);
    }
    yield Buffer.from(']');
  } finally {
    view.close();
  }
}

function parseQuery(query: URLSearchParams): Query {
  const q: Query = {};
  for (const [key, value] of query) {
    if (!(PARAMS as readonly string[]).includes(key)) throw new ApieError('bad-request', `unknown query parameter "${key}"; known: ${PARAMS.join(', ')}`);
    if (q[key as keyof Query] !== undefined) throw new ApieError('bad-request', `query parameter "${key}" is given twice`);
    q[key as keyof Query] = value;
  }
  for (const key of ['from', 'after', 'to'] as const) if (q[key] !== undefined) parseHash(q[key]!, key);
  if (q.from !== undefined && q.after !== undefined) throw new ApieError('bad-request', 'use from or after, not both');
  if (q.limit !== undefined && !/^[1-9]\d{0,14}$/.test(q.limit)) throw new ApieError('bad-request', 'limit must be a whole number of at least 1');
  if (q.wait !== undefined) {
    if (!/^\d{1,2}$/.test(q.wait) || Number(q.wait) < 1 || Number(q.wait) > 60) throw new ApieError('bad-request', 'wait must be a number of seconds from 1 to 60');
    if (q.after === undefined) throw new ApieError('bad-request', 'wait needs after=<hash>');
  }
  return q;
}

// The positions a query asks for; first > last means none. after may be the
// empty log's hash, meaning "from the start".
async function range(view: EventView, q: Query): Promise<{ first: number; last: number }> {
  let first = 1;
  if (q.from !== undefined) first = await seqOf(view, q.from);
  if (q.after !== undefined) first = (q.after === EMPTY_HASH ? 0 : await seqOf(view, q.after)) + 1;
  const last = q.to === undefined ? view.count : await seqOf(view, q.to);
  return { first, last };
}

// The stream a path names (`/events…` is the stream default), once the
// caller may do `action` on it: 400 for a bad name, 403 without permission.
function streamFor(ctx: Context, param: string | undefined, action: 'read' | 'write' | 'admin'): string {
  const name = param === undefined ? DEFAULT_STREAM : parseStreamName(param);
  authorize(ctx, name, action);
  return name;
}

function storeOf(ctx: Context, stream: string): EventStore {
  return streamsOf(ctx).stream(stream);
}

/** GET /events[?from|after|to|limit|wait]; an event stream when asked for one. */
export async function getEvents(req: ApieRequest, ctx: Context, [param]: (string | undefined)[]): Promise<ApieResponse> {
  const stream = streamFor(ctx, param, 'read');
  if (ctx.streams && /\btext\/event-stream\b/.test(req.headers.accept ?? '')) {
    return (await import('./eventstream.ts')).eventStream(req, ctx, ctx.streams.stream(stream));
  }
  return answerEvents(req, ctx, stream, true);
}

/** HEAD /events: what GET /events would answer, without loading the events. */
export function headEvents(req: ApieRequest, ctx: Context, [param]: (string | undefined)[]): Promise<ApieResponse> {
  return answerEvents(req, ctx, streamFor(ctx, param, 'read'), false);
}

async function answerEvents(req: ApieRequest, ctx: Context, stream: string, withBody: boolean): Promise<ApieResponse> {
  const q = parseQuery(req.query);
  const store = storeOf(ctx, stream);
  let view = await store.view();
  try {
    let { first, last } = await range(view, q);
    if (q.wait !== undefined && q.to === undefined && first > view.count) {
      const known = view.count;
      view.close();
      await store.waitForMore(known, Number(q.wait) * 1000, ctx.shutdown);
      view = await store.view();
      ({ first, last } = await range(view, q));
    }
    const end = q.limit === undefined ? last : Math.min(last, first + Number(q.limit) - 1);
    const headers: Record<string, string | number> = { 'X-Apie-Count': view.count };
    if (end < first) return json([], 200, headers);
    const lastHash = end === view.count ? view.head : (await view.read(end)).hash;
    Object.assign(headers, hashHeaders(lastHash));
    if (end < last) {
      const to = q.to === undefined ? '' : `&to=${q.to}`;
      // The path as asked (`/events` or `/streams/NAME/events`): stream names need no escaping.
      headers.Link = `<${req.baseUrl}${req.path}?after=${lastHash}&limit=${q.limit}${to}>; rel="next"`;
    }
    if (noneMatch(req, lastHash)) return notModified(lastHash, headers);
    headers['Content-Type'] = 'application/json';
    const body = !withBody ? null
      : end - first >= BATCH ? streamEvents(store, first, end)
      : Buffer.concat([Buffer.from('['), ...arrayBody(await view.readRange(first, end)), Buffer.from(']')]);
    return { status: 200, headers, body };
  } finally {
    view.close();
  }
}

/** GET /events/H: one event. */
export async function getEvent(req: ApieRequest, ctx: Context, [param, path]: (string | undefined)[]): Promise<ApieResponse> {
  const stream = streamFor(ctx, param, 'read');
  const hash = parseHash(path!);
  const view = await storeOf(ctx, stream).view();
  try {
    const event = await view.read(await seqOf(view, hash));
    if (noneMatch(req, hash)) return notModified(hash);
    return { status: 200, headers: { 'Content-Type': 'application/json', ...hashHeaders(hash) }, body: eventBody(event) };
  } finally {
    view.close();
  }
}

interface EventInput {
  eventType: string;
  body: unknown;
  eventId?: string;
}

/** Checks a request body against the event shape; 400 names the first problem. */
export function parseEventInput(value: unknown): EventInput {
  const problem = eventInputProblem(value);
  if (problem) throw new ApieError('bad-request', problem);
  const { eventType, body, eventId } = value as EventInput;
  return { eventType, body, eventId: eventId?.toLowerCase() };
}

/** Checks a batch: a JSON array of 1 to MAX_BATCH events; 400 names the first bad one by its position. */
export function parseBatch(value: unknown[]): EventInput[] {
  if (value.length === 0) throw new ApieError('bad-request', 'a batch must hold at least one event');
  if (value.length > MAX_BATCH) throw new ApieError('bad-request', `a batch holds at most ${MAX_BATCH} events, not ${value.length}`);
  return value.map((v, i) => {
    try {
      return parseEventInput(v);
    } catch (err) {
      throw err instanceof ApieError ? new ApieError(err.code, `event ${i + 1} of the batch: ${err.message}`) : err;
    }
  });
}

/**
 * PUT/POST /events: append one event, or a batch (a JSON array) all or none;
 * a retry of either returns what is stored.
 */
export async function appendEvent(req: ApieRequest, ctx: Context, [param]: (string | undefined)[]): Promise<ApieResponse> {
  const stream = streamFor(ctx, param, 'write');
  const value = await readJson(req, ctx.config.maxEventBytes);
  const batch = Array.isArray(value);
  const inputs = batch ? parseBatch(value) : [parseEventInput(value)];
  const header = req.headers['if-match'];
  const ifMatch = header === undefined ? undefined : parseEtags(header);
  if (ifMatch?.length === 0) throw new ApieError('bad-request', 'If-Match is empty');
  const createdAt = new Date().toISOString();
  const events: NewEvent[] = inputs.map((input) => ({
    eventId: input.eventId ?? process.getBuiltinModule('node:crypto').randomUUID(),
    eventType: input.eventType,
    body: input.body,
    createdBy: ctx.user!.name,
    createdAt,
  }));
  const result = await storeOf(ctx, stream).append({ events, ifMatch }).catch((err: unknown) => {
    // The current last hash comes with a 412, so a client can rebase and retry without a HEAD.
    if (err instanceof ApieError && err.data.lastHash) Object.assign(err.headers, hashHeaders(err.data.lastHash));
    throw err;
  });
  const stored = result.events;
  const headers = { 'Content-Type': 'application/json', ...hashHeaders(stored[stored.length - 1].hash) };
  const body = batch ? Buffer.concat([Buffer.from('['), ...arrayBody(stored), Buffer.from(']')]) : eventBody(stored[0]);
  return { status: 200, headers, body };
}

/** POST /events/verify (admins): recompute the chain from disk and restore file modes. */
export async function verifyEvents(_req: ApieRequest, ctx: Context, [param]: (string | undefined)[]): Promise<ApieResponse> {
  const stream = streamFor(ctx, param, 'admin');
  const { count, hash } = await storeOf(ctx, stream).verify();
  return json({ status: 'ok', count, hash });
}

/** GET /streams: the streams the caller may read that hold events, with their counts and last hashes, by name. */
export async function getStreams(_req: ApieRequest, ctx: Context): Promise<ApieResponse> {
  const streams = streamsOf(ctx);
  const list = [];
  for (const name of await streams.names()) {
    if (!mayRead(ctx, name)) continue;
    const view = await streams.stream(name).view();
    view.close();
    if (view.count > 0) list.push({ name, count: view.count, hash: view.head });
  }
  return json(list);
}
