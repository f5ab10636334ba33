// GET /events with `Accept: text/event-stream` (server only): the events after
// `Last-Event-ID` (or `after`, or from the start), then each new one as it is
// appended, as Server-Sent Events whose id is the event's hash, so a browser's
// EventSource resumes exactly where it stopped.
import { ApieError } from '../errors.ts';
import { EMPTY_HASH } from '../eventlog.ts';
import type { EventStore } from '../eventstore.ts';
import { parseHash } from '../http.ts';
import type { ApieRequest, ApieResponse, Context } from '../types.ts';
import { eventBody, seqOf } from './eventjson.ts';

// A comment line this often keeps proxies and the server's idle timeout from
// closing a quiet stream.
const HEARTBEAT_MS = 15_000;
const BATCH = 500;

export async function eventStream(req: ApieRequest, ctx: Context, store: EventStore): Promise<ApieResponse> {
  for (const key of req.query.keys()) {
    if (key !== 'after') throw new ApieError('bad-request', `unknown query parameter "${key}" for an event stream; known: after`);
  }
  const start = parseHash(req.headers['last-event-id'] ?? req.query.get('after') ?? EMPTY_HASH, 'Last-Event-ID / after');
  const view = await store.view();
  let position: number;
  try {
    position = start === EMPTY_HASH ? 0 : await seqOf(view, start);
  } finally {
    view.close();
  }
  const stop = AbortSignal.any([ctx.shutdown, req.signal].filter((s): s is AbortSignal => s !== undefined));
  async function* events(): AsyncGenerator<string> {
    yield 'retry: 2000\n\n';
    while (!stop.aborted) {
      const v = await store.view();
      let batch;
      try {
        batch = v.count > position ? await v.readRange(position + 1, Math.min(v.count, position + BATCH)) : [];
      } finally {
        v.close();
      }
      if (batch.length) {
        // Imported events may hold newlines; SSE joins `data:` lines with them.
        yield batch.map((e) => `id: ${e.hash}\ndata: ${eventBody(e).toString('utf8').replace(/\n/g, '\ndata: ')}\n\n`).join('');
        position = batch[batch.length - 1].seq;
      } else if (!(await store.waitForMore(position, HEARTBEAT_MS, stop)) && !stop.aborted) {
        yield ': heartbeat\n\n';
      }
    }
  }
  return {
    status: 200,
    headers: { 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-store', 'X-Accel-Buffering': 'no' },
    body: events(),
  };
}
