// Live events of a stream: Server-Sent Events where the server offers them
// (`apie serve`), long polls (`?after=H&wait=S`) where it does not (CGI, which
// answers the same request with a JSON array). Reconnects from the last hash
// seen, backing off while the server cannot be reached.
import { ApieClientError, eventsPath, expectOk, isTransient, type Transport } from './transport.ts';
import type { StoredEvent } from './types.ts';

const WAIT_SECONDS = 25;
const PAGE = 1000;
// The server sends a heartbeat every 15 s: this long without a byte means the
// connection is dead even if no error says so.
const SILENCE_MS = 40_000;
const MAX_BACKOFF_MS = 30_000;

export interface FollowHooks {
  /** Events in log order, each right after the previous one (the first right after `after`). */
  onEvents(events: StoredEvent[]): void;
  /** A refusal (a 4xx such as an unknown `after`) ends the feed; transient errors only delay it. */
  onError?(err: Error): void;
}

// Whether each Apie offers SSE, learnt from its first answer.
const sseOffered = new WeakMap<Transport, boolean>();

/** Follows a stream from `after`; returns the function that stops it. */
export function follow(transport: Transport, stream: string, after: string, hooks: FollowHooks): () => void {
  const stop = new AbortController();
  const path = eventsPath(stream);
  let cursor = after;
  const deliver = (events: StoredEvent[]) => {
    if (!events.length || stop.signal.aborted) return;
    cursor = events[events.length - 1].hash;
    hooks.onEvents(events);
  };

  async function longPoll(): Promise<void> {
    const res = await transport.request('GET', `${path}?after=${cursor}&wait=${WAIT_SECONDS}&limit=${PAGE}`, {
      signal: stop.signal,
      timeoutMs: (WAIT_SECONDS + 20) * 1000,
    });
    deliver((await expectOk(res)) as StoredEvent[]);
  }

  async function eventStream(): Promise<void> {
    const connection = new AbortController();
    const signal = AbortSignal.any([stop.signal, connection.signal]);
    // `after` in the query too: a server without SSE answers with a page of JSON.
    const res = await transport.request('GET', `${path}?after=${cursor}`, { headers: { Accept: 'text/event-stream' }, signal });
    if (!/^text\/event-stream/.test(res.headers.get('content-type') ?? '')) {
      sseOffered.set(transport, false);
      deliver((await expectOk(res)) as StoredEvent[]);
      return;
    }
    sseOffered.set(transport, true);
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let watchdog = setTimeout(() => connection.abort(), SILENCE_MS);
    let buffer = '';
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        clearTimeout(watchdog);
        watchdog = setTimeout(() => connection.abort(), SILENCE_MS);
        buffer += value.replace(/\r\n?/g, '\n');
        const end = buffer.lastIndexOf('\n\n');
        if (end < 0) continue;
        const messages = buffer.slice(0, end).split('\n\n');
        buffer = buffer.slice(end + 2);
        const events: StoredEvent[] = [];
        for (const message of messages) {
          const data = message.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(l[5] === ' ' ? 6 : 5));
          if (data.length) events.push(JSON.parse(data.join('\n')));
        }
        deliver(events);
      }
    } catch (err) {
      // A silent connection is dropped and reopened; nothing to report.
      if (!connection.signal.aborted || stop.signal.aborted) throw err;
    } finally {
      clearTimeout(watchdog);
    }
  }

  void (async () => {
    let backoff = 0;
    while (!stop.signal.aborted) {
      try {
        await (sseOffered.get(transport) === false ? longPoll() : eventStream());
        backoff = 0;
      } catch (err) {
        if (stop.signal.aborted) return;
        if (!isTransient(err) && err instanceof ApieClientError) {
          hooks.onError?.(err);
          return;
        }
        backoff = Math.min(MAX_BACKOFF_MS, backoff ? backoff * 2 : 500);
        // A subscriber waits for the server the way an open connection would: keeping Node alive.
        await transport.pause(backoff, stop.signal, true);
      }
    }
  })();
  return () => stop.abort();
}
