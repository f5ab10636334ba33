// Helpers for the client tests: a URL for every front end (CGI gets a tiny
// HTTP server that spawns the executable per request, as Apache would), the
// client module as the site serves it, a fetch that can go offline or lose
// answers, and waiting for a condition.
import { createServer, type Server } from 'node:http';
import { cgiEnv, runCgi, type FrontEnd, type Site, type SiteOptions } from './harness.ts';
import type * as ClientModule from '../../src/client/index.ts';

export type Client = typeof ClientModule;

export const USERS = { 'alice@example.com': 'secret', 'bob@example.com': 'hunter2' };
export const ALICE_LOGIN = { user: 'alice@example.com', password: 'secret' };
export const BOB_LOGIN = { user: 'bob@example.com', password: 'hunter2' };

const SCRIPT = '/cgi-bin/apie.cgi';

/** An HTTP server that runs the executable as CGI for each request; its base URL ends in /cgi-bin/apie.cgi. */
export async function cgiShim(dataDir: string): Promise<{ base: string; close(): Promise<void> }> {
  const server: Server = createServer(async (req, res) => {
    try {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c);
      const url = new URL(req.url ?? '/', 'http://shim');
      if (!url.pathname.startsWith(SCRIPT)) {
        res.writeHead(404).end();
        return;
      }
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string' && k !== 'content-length') headers[k] = v;
      const body = chunks.length ? Buffer.concat(chunks) : undefined;
      const env = cgiEnv(dataDir, req.method ?? 'GET', (url.pathname.slice(SCRIPT.length) || '/') + url.search, { headers, body });
      const reply = await runCgi(env, body);
      res.writeHead(reply.status, reply.headers).end(reply.body);
    } catch (err) {
      res.writeHead(502).end(String(err));
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    base: `http://127.0.0.1:${port}${SCRIPT}`,
    close: () => new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

/** A site with an HTTP URL whatever its front end. */
export interface UrlSite {
  site: Site;
  url: string;
  close(): Promise<void>;
}

export async function openWithUrl(fe: FrontEnd, opts: SiteOptions = {}): Promise<UrlSite> {
  const site = await fe.open({ users: USERS, ...opts });
  if (site.kind !== 'cgi') return { site, url: site.base, close: () => site.close() };
  const shim = await cgiShim(site.dataDir);
  return {
    site,
    url: shim.base,
    close: async () => {
      await shim.close();
      await site.close();
    },
  };
}

const loaded = new Map<string, Promise<Client>>();

/** The client module exactly as `url` serves it at /client.js (one import per distinct text). */
export async function loadClient(url: string): Promise<Client> {
  const res = await fetch(`${url}/client.js`);
  if (res.status !== 200) throw new Error(`GET /client.js: ${res.status}`);
  const text = await res.text();
  const etag = res.headers.get('etag')!.replace(/"/g, '');
  // A data: URL leaves no file behind; the module's only import is node:fs/promises.
  if (!loaded.has(etag)) loaded.set(etag, import(`data:text/javascript;base64,${Buffer.from(text).toString('base64')}`));
  return loaded.get(etag)!;
}

/**
 * A fetch with faults: `offline` fails every request before sending it;
 * `loseAnswers(n, match)` lets the next n matching requests reach the server
 * and throws their answers away, as a dropped connection would.
 */
export function faultyFetch() {
  let lose: { n: number; match: (method: string, url: string) => boolean } | undefined;
  const inFlight = new Set<AbortController>();
  const f = {
    offline: false,
    requests: [] as { method: string; url: string; status?: number }[],
    loseAnswers(n: number, match: (method: string, url: string) => boolean = () => true) {
      lose = { n, match };
    },
    /** Goes offline and cuts every connection in flight (long polls, event streams). */
    disconnect() {
      f.offline = true;
      for (const c of inFlight) c.abort(new TypeError('network connection lost'));
    },
    fetch: (async (input: string | URL | Request, init: RequestInit = {}) => {
      const method = init.method ?? 'GET';
      const url = String(input);
      const entry: { method: string; url: string; status?: number } = { method, url };
      f.requests.push(entry);
      if (f.offline) throw new TypeError('fetch failed (offline)');
      const cut = new AbortController();
      inFlight.add(cut);
      try {
        const res = await fetch(input, { ...init, signal: init.signal ? AbortSignal.any([init.signal, cut.signal]) : cut.signal });
        entry.status = res.status;
        if (lose && lose.n > 0 && lose.match(method, url)) {
          lose.n--;
          await res.arrayBuffer();
          throw new TypeError('fetch failed (answer lost)');
        }
        return res;
      } finally {
        inFlight.delete(cut);
      }
    }) as typeof fetch,
  };
  return f;
}

/** Resolves once `check` returns a truthy value (checked every 20 ms); fails after `ms`. */
export async function eventually<T>(check: () => T | Promise<T>, what: string, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Basic credentials for the harness's request(). */
export const ALICE_AUTH = 'alice@example.com:secret';
