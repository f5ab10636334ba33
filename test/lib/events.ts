// Helpers for the event-stream tests: the chain computed independently of
// Apie, CGI appends from another process, and original-Apie directories.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as assert from 'uvu/assert';
import { ALICE, cgiEnv, EXE, parseCgiOutput, tempDir, type Reply, type Site } from './harness.ts';

export const H0 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

export function sha(prev: string, json: string | Buffer): string {
  return createHash('sha256').update(prev + '\n').update(json).digest('hex');
}

/** Asserts events (as returned) form one chain starting after `prev`; returns the last hash. */
export function assertChain(events: any[], prev = H0): string {
  for (const [i, e] of events.entries()) {
    const { hash, ...rest } = e;
    assert.is(hash, sha(prev, JSON.stringify(rest)), `event ${i + 1} of ${events.length}`);
    prev = hash;
  }
  return prev;
}

export const JSON_HEADERS = { 'Content-Type': 'application/json' };

/** The nth eventId of a batch made with ids. */
export const uuid = (n: number) => `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`;

/** A batch of n events tagged `tag` (body { tag, i, n }), with eventIds uuid(1…n) when `ids`. */
export const batchOf = (n: number, tag: unknown, ids = false) => Array.from({ length: n }, (_, i) => ({ eventType: 'line', body: { tag, i, n }, ...(ids ? { eventId: uuid(i + 1) } : {}) }));

/** Asserts that every batch (events sharing a body.tag) sits whole, contiguous and in order. */
export function assertWholeBatches(events: any[]): void {
  for (let at = 0; at < events.length;) {
    const { tag, n } = events[at].body;
    const run = events.slice(at, at + n);
    assert.equal(run.map((e) => JSON.stringify(e.body.tag)), Array(n).fill(JSON.stringify(tag)), `batch ${JSON.stringify(tag)} at ${at} is not whole`);
    assert.equal(run.map((e) => e.body.i), [...Array(n).keys()], `batch ${JSON.stringify(tag)} is out of order`);
    at += n;
  }
}

/** Appends one event (or a batch, as an array) through the site, to `/events` or another stream's path; returns the reply. */
export function put(site: Site, event: unknown, headers: Record<string, string> = {}, path = '/events', auth = ALICE): Promise<Reply> {
  return site.request('PUT', path, { auth, headers: { ...JSON_HEADERS, ...headers }, body: typeof event === 'string' ? event : JSON.stringify(event) });
}

/** GET /events: the whole log, asserting a 200. */
export async function allEvents(site: Site): Promise<any[]> {
  const r = await site.request('GET', '/events', { auth: ALICE });
  assert.is(r.status, 200, r.text);
  return r.json();
}

// Bodies of every JSON kind, for the events a test needs before it starts.
const BODIES = [{ title: 'milk' }, [1, 'two', null], 'text ü ✓', null, { nested: { deep: [true, 1.5e300] } }];

/**
 * Gives an empty log (of /events, or of the stream of another events path) n
 * events, shaped as the API stores them, in one run of `apie import-apie`
 * (one process, not n requests); returns them as GET does.
 */
export async function seed(site: Site, n: number, path = '/events'): Promise<any[]> {
  const parent = tempDir('apie-seed-');
  try {
    const jsons = Array.from({ length: n }, (_, i) => JSON.stringify({
      eventId: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
      eventType: `seed-${i}`,
      body: BODIES[i % BODIES.length],
      createdBy: 'alice@example.com',
      createdAt: '2026-01-01T00:00:00.000Z',
    }));
    writeOriginalApie(join(parent, 'original'), jsons);
    const stream = /^\/streams\/([^/]+)\/events$/.exec(path)?.[1] ?? 'default';
    const imported = site.cli(['import-apie', join(parent, 'original'), '--stream', stream]);
    assert.is(imported.status, 0, imported.stderr);
  } finally {
    rmSync(parent, { recursive: true, force: true });
  }
  const r = await site.request('GET', path, { auth: ALICE });
  assert.is(r.status, 200, r.text);
  assert.is(r.json().length, n);
  return r.json();
}

/** HEAD /events (or another stream's path): the count and last hash (H0 when empty). */
export async function logHead(site: Site, path = '/events'): Promise<{ count: number; hash: string }> {
  const r = await site.request('HEAD', path, { auth: ALICE });
  assert.is(r.status, 200);
  return { count: Number(r.headers['x-apie-count']), hash: r.headers['x-apie-hash'] ?? H0 };
}

/**
 * Runs one CGI request as a separate process, as the user the site's web
 * server runs CGI as; `kill` may stop it with SIGKILL after some milliseconds.
 */
export function cgiProcess(site: Site, method: string, path: string, body?: string, headers: Record<string, string> = {}, killAfterMs?: number) {
  const env = cgiEnv(site.dataDir, method, path, { auth: ALICE, headers: { ...JSON_HEADERS, ...headers }, body });
  return new Promise<{ reply?: Reply; killed: boolean }>((resolve, reject) => {
    const child = spawn(EXE, [], { env, stdio: ['pipe', 'pipe', 'pipe'], ...site.runAs });
    const out: Buffer[] = [];
    child.stdout.on('data', (d) => out.push(d));
    child.stderr.on('data', () => {});
    child.stdin.on('error', () => {});
    child.on('error', reject);
    const timer = killAfterMs === undefined ? undefined : setTimeout(() => child.kill('SIGKILL'), killAfterMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (signal === 'SIGKILL') return resolve({ killed: true });
      if (code !== 0) return reject(new Error(`CGI exited ${code}`));
      resolve({ reply: parseCgiOutput(Buffer.concat(out)), killed: false });
    });
    child.stdin.end(body);
  });
}

/**
 * Writes an original Apie data directory: `index` lists the entry files (named
 * by hash) oldest first; each entry holds the previous hash, a newline and J.
 * Returns the hashes. `finalNewline` adds an unhashed newline to each file.
 */
export function writeOriginalApie(dir: string, jsons: string[], opts: { finalNewline?: boolean; prev?: string } = {}): string[] {
  mkdirSync(dir, { recursive: true });
  const hashes: string[] = [];
  let prev = opts.prev ?? H0;
  for (const json of jsons) {
    const hash = sha(prev, json);
    writeFileSync(join(dir, hash), `${prev}\n${json}${opts.finalNewline ? '\n' : ''}`);
    hashes.push(hash);
    prev = hash;
  }
  writeFileSync(join(dir, 'index'), hashes.map((h) => `${h}\n`).join(''));
  return hashes;
}
