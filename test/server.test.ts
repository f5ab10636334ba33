// `apie serve` as the fast way to run Apie: live state shared safely with CGI
// writers, group commit under many appenders, long polls and Server-Sent
// Events woken by appends, early 413s, workers, graceful shutdown.
import { request as httpRequest } from 'node:http';
import { readdirSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createContext } from '../src/app.ts';
import { startServer, stopServer } from '../src/server.ts';
import { ALICE, cgiEnv, makeDataDir, runCgi, startServe, stop, tempDir, untilWaiting, waitFor, type Reply } from './lib/harness.ts';
import { assertChain, H0, JSON_HEADERS } from './lib/events.ts';
import { cgiProcess } from './lib/events.ts';

const AUTH = { Authorization: `Basic ${Buffer.from(ALICE).toString('base64')}` };

interface Ctx {
  parent: string;
  dataDir: string;
  base: string;
  child: import('node:child_process').ChildProcess;
  stderr: () => string;
}

async function call(base: string, method: string, path: string, body?: string, headers: Record<string, string> = {}): Promise<Reply> {
  const res = await fetch(base + path, { method, headers: { ...AUTH, ...JSON_HEADERS, ...headers }, body });
  const buf = Buffer.from(await res.arrayBuffer());
  const h: Record<string, string> = {};
  res.headers.forEach((v, k) => (h[k] = v));
  return { status: res.status, headers: h, body: buf, text: buf.toString(), json: () => JSON.parse(buf.toString()) };
}

const append = (base: string, n: number | string, headers: Record<string, string> = {}) =>
  call(base, 'PUT', '/events', JSON.stringify({ eventType: 'test', body: { n } }), headers);

// A stand-in Site for cgiProcess: CGI requests as another process on the same data.
const cgiSite = (dataDir: string) => ({ kind: 'cgi', dataDir }) as never;

const APP = 'https://app.example.com';

function withServer(name: string, args: string[] = []) {
  const t = suite<Ctx>(name);
  t.before.each(async (ctx) => {
    ctx.parent = tempDir();
    ctx.dataDir = makeDataDir(ctx.parent, { config: { corsOrigins: [APP] } });
    Object.assign(ctx, await startServe(ctx.dataDir, ['--quiet', ...args]));
  });
  t.after.each(async (ctx) => {
    await stop(ctx.child);
    rmSync(ctx.parent, { recursive: true, force: true });
  });
  return t;
}

for (const workers of ['1', '2']) {
  const t = withServer(`server (--workers ${workers})`, ['--workers', workers]);

  t('should include in its next read an event another process appended through CGI', async ({ base, dataDir }) => {
    assert.is((await append(base, 'first')).status, 200);
    // Warm the server's view of the log, then change the log behind its back.
    assert.is((await call(base, 'GET', '/events')).json().length, 1);
    const cgi = await cgiProcess(cgiSite(dataDir), 'PUT', '/events', JSON.stringify({ eventType: 'from-cgi', body: 2 }));
    assert.is(cgi.reply!.status, 200);
    const hash = cgi.reply!.json().hash;
    const list = (await call(base, 'GET', '/events')).json();
    assert.is(list.length, 2);
    assert.is(list[1].hash, hash);
    assert.is((await call(base, 'GET', `/events/${hash}`)).status, 200);
    const head = await call(base, 'HEAD', '/events');
    assert.is(head.headers['x-apie-count'], '2');
    assert.is(head.headers['x-apie-hash'], hash);
    // And appends through the server chain onto the CGI's event.
    const next = await append(base, 'after-cgi', { 'If-Match': `"${hash}"` });
    assert.is(next.status, 200);
  });

  t('should keep every one of 200 concurrent appends, in one chain', async ({ base }) => {
    const replies = await Promise.all(Array.from({ length: 200 }, (_, i) => append(base, i)));
    assert.equal(replies.map((r) => r.status).filter((s) => s !== 200), []);
    const events = (await call(base, 'GET', '/events')).json();
    assert.is(events.length, 200);
    assertChain(events);
    assert.equal(new Set(events.map((e: any) => e.body.n)).size, 200);
    const answered = new Set(replies.map((r) => r.json().hash));
    assert.ok(events.every((e: any) => answered.has(e.hash)), 'every stored event was answered 200');
    const verify = await call(base, 'POST', '/events/verify');
    assert.equal(verify.json(), { status: 'ok', count: 200, hash: events[199].hash });
  });

  t('should decide If-Match in order when racing appends name the same head', async ({ base }) => {
    const head = (await append(base, 'base')).json().hash;
    const replies = await Promise.all(Array.from({ length: 20 }, (_, i) => append(base, i, { 'If-Match': head })));
    // Exactly one may follow the head; the rest are told the new head.
    assert.is(replies.filter((r) => r.status === 200).length, 1);
    assert.is(replies.filter((r) => r.status === 412).length, 19);
    assert.is((await call(base, 'GET', '/events')).json().length, 2);
  });

  t('should answer a long poll as soon as an event is appended, by the server or by CGI', async ({ base, dataDir }) => {
    // The server watches the log for other processes' appends once it exists.
    assert.is((await append(base, 0)).status, 200);
    for (const via of ['server', 'cgi']) {
      const last = (await call(base, 'HEAD', '/events')).headers['x-apie-hash'];
      let answered = false;
      const poll = call(base, 'GET', `/events?after=${last}&wait=60`).finally(() => (answered = true));
      await untilWaiting(dataDir);
      assert.not.ok(answered, `${via}: held until an append`);
      const appended = via === 'server'
        ? (await append(base, via)).json()
        : (await cgiProcess(cgiSite(dataDir), 'PUT', '/events', JSON.stringify({ eventType: 'x', body: via }))).reply!.json();
      // Woken by the append, well before its 60 s run out (the bench measures how soon).
      await waitFor(`${via}: the long poll to be answered`, () => answered, 30_000);
      const answer = await poll;
      assert.is(answer.status, 200);
      assert.equal(answer.json().map((e: any) => e.hash), [appended.hash], via);
    }
  });

  t('should stream events as Server-Sent Events and resume from Last-Event-ID', async ({ base, dataDir }) => {
    const first = (await append(base, 1)).json();
    const res = await fetch(`${base}/events`, { headers: { ...AUTH, Accept: 'text/event-stream' } });
    assert.is(res.status, 200);
    assert.match(res.headers.get('content-type')!, /^text\/event-stream/);
    const reader = res.body!.getReader();
    let text = '';
    const until = async (re: RegExp) => {
      const deadline = Date.now() + 15_000;
      while (!re.test(text)) {
        if (Date.now() > deadline) throw new Error(`no ${re} in ${text}`);
        const { value, done } = await reader.read();
        if (done) throw new Error('stream ended');
        text += Buffer.from(value).toString();
      }
    };
    await until(new RegExp(`id: ${first.hash}\\ndata: .*\\n\\n`));
    const second = (await append(base, 2)).json();
    await until(new RegExp(`id: ${second.hash}\\n`));
    const third = (await cgiProcess(cgiSite(dataDir), 'PUT', '/events', JSON.stringify({ eventType: 'x', body: 3 }))).reply!.json();
    await until(new RegExp(`id: ${third.hash}\\n`));
    const data = [...text.matchAll(/^data: (.*)$/gm)].map((m) => JSON.parse(m[1]));
    assert.equal(data.map((e) => e.hash), [first.hash, second.hash, third.hash]);
    await reader.cancel();

    // A reconnecting EventSource sends the last id it saw: only what follows comes.
    const resumed = await fetch(`${base}/events`, { headers: { ...AUTH, Accept: 'text/event-stream', 'Last-Event-ID': second.hash } });
    const r2 = resumed.body!.getReader();
    let text2 = '';
    while (!text2.includes(third.hash)) text2 += Buffer.from((await r2.read()).value!).toString();
    assert.not.match(text2, new RegExp(first.hash));
    assert.not.match(text2, new RegExp(`id: ${second.hash}`));
    await r2.cancel();
  });

  t('should answer 404 for an event stream after an unknown hash', async ({ base }) => {
    const r = await call(base, 'GET', `/events?after=${'0'.repeat(64)}`, undefined, { Accept: 'text/event-stream' });
    assert.is(r.status, 404);
    assert.is(r.json().status, 'error');
  });

  t.run();
}

const snapshots = withServer('server: snapshots', ['--workers', '1']);

// The server's views are snapshots of the log's files at one count: each
// append makes the next read open a new one, and the old ones must be closed.
snapshots('should keep no files open for snapshots of a log that has grown since', async ({ base, child }) => {
  const openFiles = () => readdirSync(`/proc/${child.pid}/fd`).length;
  const first = (await append(base, 0)).json().hash;
  assert.is((await call(base, 'GET', `/events/${first}`)).status, 200);
  const before = openFiles();
  for (let i = 1; i <= 100; i++) {
    const { hash } = (await append(base, i)).json();
    // Several reads at once share a snapshot; the next append retires it.
    const reads = await Promise.all([call(base, 'GET', `/events/${hash}`), call(base, 'GET', `/events?after=${first}`), call(base, 'HEAD', '/events')]);
    assert.equal(reads.map((r) => r.status), [200, 200, 200]);
    assert.is(reads[1].json().length, i);
  }
  // A few sockets may still be closing; a snapshot left open per append would be hundreds of files.
  assert.ok(openFiles() - before < 20, `${openFiles() - before} more files open after 100 appends and reads`);
});

snapshots.run();

const limits = withServer('server: limits');

limits('should answer 413 from Content-Length before any of the body arrives', async ({ base }) => {
  const url = new URL(base);
  for (const [path, length] of [['/events', 2 * 1024 * 1024], ['/storage/huge.bin', 64 * 1024 ** 3]] as const) {
    const reply = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = httpRequest({ host: url.hostname, port: url.port, method: 'PUT', path, headers: { ...AUTH, 'Content-Length': String(length) } }, (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode!, body }));
      });
      req.on('error', reject);
      // Headers only: the server must not wait for bytes that never come.
      req.flushHeaders();
    });
    assert.is(reply.status, 413, path);
    assert.is(JSON.parse(reply.body).status, 'error');
  }
  assert.equal((await call(base, 'GET', '/events')).json(), []);
});

limits('should answer 400 to a malformed %-escape in the path, as JSON with CORS headers', async ({ base }) => {
  const url = new URL(base);
  const reply = await new Promise<{ status: number; headers: Record<string, unknown>; body: string }>((resolve, reject) => {
    // fetch would refuse to send this path; node:http sends it as written.
    const req = httpRequest({ host: url.hostname, port: url.port, path: '/events/%E0%A4%A', headers: { ...AUTH, Origin: APP } }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
  assert.is(reply.status, 400);
  assert.match(JSON.parse(reply.body).errorMessage, /percent-encoding/);
  assert.is(reply.headers['access-control-allow-origin'], APP);
});

limits.run();

const lifecycle = suite('server: shutdown and logging');

lifecycle('should finish every append in flight when stopped with SIGTERM, and exit 0', async () => {
  const parent = tempDir();
  try {
    const dataDir = makeDataDir(parent);
    const { child, base } = await startServe(dataDir, ['--quiet', '--workers', '1']);
    const outcomes = Array.from({ length: 60 }, (_, i) => append(base, i).then((r) => r, (err: Error) => err));
    // Let the requests reach the server, then stop it while they are being answered.
    await Promise.race(outcomes);
    const exit = stop(child, 'SIGTERM');
    const settled = await Promise.all(outcomes);
    assert.is(await exit, 0);
    const ok = settled.filter((r): r is Reply => !(r instanceof Error) && r.status === 200);
    assert.ok(ok.length >= 1);
    // Nothing answered 200 is missing, and nothing was stored without an answer.
    const after = await startServe(dataDir, ['--quiet', '--workers', '1']);
    try {
      const events = (await call(after.base, 'GET', '/events')).json();
      assertChain(events, H0);
      assert.equal(events.map((e: any) => e.hash).sort(), ok.map((r) => r.json().hash).sort());
    } finally {
      await stop(after.child);
    }
  } finally {
    rmSync(parent, { recursive: true, force: true });
  }
});

lifecycle('should log one line per request to stderr, and none with --quiet', async () => {
  const parent = tempDir();
  try {
    const dataDir = makeDataDir(parent);
    const loud = await startServe(dataDir, ['--workers', '1']);
    await call(loud.base, 'GET', '/info');
    await call(loud.base, 'GET', '/nope');
    await stop(loud.child);
    assert.match(loud.stderr(), /^127\.0\.0\.1 GET \/info 200 \d+ [\d.]+ms alice@example\.com$/m);
    assert.match(loud.stderr(), /^127\.0\.0\.1 GET \/nope 404 \d+ [\d.]+ms alice@example\.com$/m);
    const quiet = await startServe(dataDir, ['--workers', '1', '--quiet']);
    await call(quiet.base, 'GET', '/info');
    await stop(quiet.child);
    assert.not.match(quiet.stderr(), /GET \/info/);
  } finally {
    rmSync(parent, { recursive: true, force: true });
  }
});

lifecycle('should warn on stderr when it starts with corsOrigins "*", where CGI requests stay quiet', async () => {
  const parent = tempDir();
  try {
    const dataDir = makeDataDir(parent, { config: { corsOrigins: ['*'] } });
    const server = await startServe(dataDir, ['--quiet', '--workers', '1']);
    await stop(server.child);
    assert.match(server.stderr(), /warning: "corsOrigins": \["\*"\] lets any web page/);
    const cgi = await runCgi(cgiEnv(dataDir, 'GET', '/info', { auth: ALICE }));
    assert.is(cgi.status, 200);
    assert.is(cgi.stderr, '');
  } finally {
    rmSync(parent, { recursive: true, force: true });
  }
});

lifecycle('should give a server started after another one stopped, in the same process, live event streams', async () => {
  const parent = tempDir();
  try {
    const ctx = createContext(makeDataDir(parent));
    const first = await startServer({ host: '127.0.0.1', port: 0, ctx, quiet: true });
    await stopServer(first);
    const second = await startServer({ host: '127.0.0.1', port: 0, ctx, quiet: true });
    try {
      const base = `http://127.0.0.1:${(second.address() as AddressInfo).port}`;
      const res = await fetch(`${base}/events`, { headers: { ...AUTH, Accept: 'text/event-stream' } });
      const reader = res.body!.getReader();
      const appended = (await append(base, 'live')).json();
      // Were the second server born stopped, its stream would end before the event.
      let text = '';
      while (!text.includes(`id: ${appended.hash}`)) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`the stream ended after ${JSON.stringify(text)}`);
        text += Buffer.from(value).toString();
      }
      await reader.cancel();
    } finally {
      await stopServer(second, 0);
    }
  } finally {
    rmSync(parent, { recursive: true, force: true });
  }
});

lifecycle.run();
