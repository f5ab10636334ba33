// The client: catching up on 100,000 events in pages of 1,000 with read()
// against the same pages fetched with plain fetch, in the same run and
// interleaved; the size of /client.js on the wire; and what embedding it
// costs a CGI request that does not ask for it (the same executable built
// with --no-client as the baseline).
import { spawn, spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { EMPTY_HASH } from '../../src/client/chain.ts';
import type * as ClientModule from '../../src/client/index.ts';
import { logOf } from './events.ts';
import { EXE, NODE, ROOT, bearerAuth, cgiEnv, dataDir, median, medians, type Row } from './lib.ts';

const EVENTS = 100_000;
const PAGE = 1000;
const ROUNDS = 5;

function serve(data: string): Promise<{ base: string; stop(): void }> {
  const child = spawn(EXE, ['serve', '--port', '0', '--data', data, '--workers', '1', '--quiet'], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d) => {
      out += d;
      const m = /listening on (http:\/\/[^/\s]+)/.exec(out);
      if (m) resolve({ base: m[1], stop: () => child.kill('SIGTERM') });
    });
    child.once('exit', (code) => reject(new Error(`apie serve exited ${code}`)));
  });
}

// Events per second of one full catch-up.
async function timed(run: () => Promise<number>): Promise<number> {
  const started = performance.now();
  const count = await run();
  if (count !== EVENTS) throw new Error(`caught up on ${count} events, not ${EVENTS}`);
  return count / ((performance.now() - started) / 1000);
}

async function catchUp(): Promise<Row[]> {
  const data = await logOf(EVENTS);
  const token = bearerAuth(data).slice('Bearer '.length);
  const server = await serve(data);
  try {
    const { Apie } = (await import(pathToFileURL(join(ROOT, 'build', 'client.js')).href)) as typeof ClientModule;
    const apie = new Apie({ url: server.base, token });
    const viaClient = async () => {
      let n = 0;
      for await (const _ of apie.read('default', { limit: PAGE })) n++;
      return n;
    };
    // What an app would write by hand: one page after another, each parsed.
    const viaFetch = async () => {
      let n = 0;
      let after = EMPTY_HASH;
      for (;;) {
        const res = await fetch(`${server.base}/events?after=${after}&limit=${PAGE}`, { headers: { Authorization: `Bearer ${token}` } });
        const events = (await res.json()) as { hash: string }[];
        n += events.length;
        if (events.length < PAGE) return n;
        after = events[events.length - 1].hash;
      }
    };
    await viaFetch();
    await viaClient();
    const client: number[] = [];
    const plain: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      plain.push(await timed(viaFetch));
      client.push(await timed(viaClient));
    }
    return [{
      section: 'client',
      what: `catch-up of ${EVENTS.toLocaleString('en')} events in pages of ${PAGE} with read(), apie serve`,
      value: median(client),
      unit: 'events/s',
      baseline: { what: 'the same pages with plain fetch', value: median(plain) },
      goal: 0.8,
      atLeast: true,
    }];
  } finally {
    server.stop();
    rmSync(join(data, '..'), { recursive: true, force: true });
  }
}

async function size(): Promise<Row[]> {
  const data = dataDir();
  try {
    const body = (headers: Record<string, string>) => {
      const out = spawnSync(EXE, [], { env: cgiEnv(data, 'GET', '/client.js', headers) }).stdout;
      const split = out.indexOf('\r\n\r\n');
      return { head: out.subarray(0, split).toString(), body: out.subarray(split + 4) };
    };
    const gzipped = body({ 'Accept-Encoding': 'gzip' });
    if (!/Content-Encoding: gzip/.test(gzipped.head)) throw new Error('GET /client.js did not answer gzipped');
    const plainBody = body({}).body;
    if (gunzipSync(gzipped.body).compare(plainBody) !== 0) throw new Error('the gzipped /client.js is not the plain one');
    return [
      { section: 'client', what: '`/client.js` minified and gzipped, as served', value: gzipped.body.length / 1024, unit: 'KiB', baseline: { what: 'budget', value: 15 }, goal: 1 },
      { section: 'client', what: '`/client.js` minified', value: plainBody.length / 1024, unit: 'KiB' },
    ];
  } finally {
    rmSync(join(data, '..'), { recursive: true, force: true });
  }
}

async function startup(): Promise<Row[]> {
  const data = dataDir();
  const without = join(ROOT, 'build', 'apie-no-client.cgi');
  const build = spawnSync(process.execPath, [join(ROOT, 'scripts', 'build.ts'), '--sea', '--no-client', '--out', without], { encoding: 'utf8' });
  if (build.status !== 0) throw new Error(`build without the client failed: ${build.stderr}`);
  try {
    const env = cgiEnv(data, 'GET', '/');
    const m = medians([
      { name: 'node', command: `${NODE} -e 0` },
      { name: 'with', command: EXE, env, expect: 401 },
      { name: 'without', command: without, env, expect: 401 },
      { name: 'js', command: EXE, env: cgiEnv(data, 'GET', '/client.js', { 'Accept-Encoding': 'gzip' }), expect: 200 },
    ], 100, 10, 10);
    return [
      { section: 'client', what: 'CGI `GET /` → 401, executable with the client embedded', value: m.get('with')!, unit: 'ms', baseline: { what: 'built with --no-client', value: m.get('without')! }, goal: 1.05 },
      { section: 'client', what: 'CGI `GET /client.js` (gzip)', value: m.get('js')!, unit: 'ms', baseline: { what: 'node -e 0', value: m.get('node')! } },
    ];
  } finally {
    rmSync(without, { force: true });
    rmSync(join(data, '..'), { recursive: true, force: true });
  }
}

export async function run(): Promise<Row[]> {
  return [...(await size()), ...(await startup()), ...(await catchUp())];
}
