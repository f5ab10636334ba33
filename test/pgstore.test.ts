// Several servers on one PostgreSQL (the contract itself runs through CGI and
// the server on PostgreSQL in events, streams, batches and permissions): two
// `apie serve` on one database and one data directory keep one chain under
// concurrent appends, wake each other's event streams, survive the death of
// one of them mid-batch and a restart of PostgreSQL under load without losing
// anything they acknowledged; and a database that is away or was never
// migrated is answered with the right error, through CGI as well.
import { rmSync } from 'node:fs';
import * as assert from 'uvu/assert';
import { suite } from 'uvu';
import { ALICE, cgiEnv, makeDataDir, runCgi, runCli, startServe, stop, tempDir, waitFor } from './lib/harness.ts';
import { assertChain, assertWholeBatches, batchOf, JSON_HEADERS } from './lib/events.ts';
import { createDatabase, listening, POSTGRES_MISSING, sharedCluster, startCluster, type Cluster } from './lib/postgres.ts';
import { seeded } from './lib/random.ts';

const AUTH = { Authorization: `Basic ${Buffer.from(ALICE).toString('base64')}` };
const PATH = '/streams/orders/events';

interface Server {
  base: string;
  child: import('node:child_process').ChildProcess;
}

// A data directory whose events are in `url`, migrated.
function pgDataDir(url: string): { parent: string; dataDir: string } {
  const parent = tempDir();
  const dataDir = makeDataDir(parent, { config: { eventStore: url } });
  const r = runCli(['migrate', '--data', dataDir]);
  assert.is(r.status, 0, r.stderr);
  return { parent, dataDir };
}

async function append(server: Server, body: unknown): Promise<{ status: number; headers: Headers; json: any }> {
  const r = await fetch(server.base + PATH, { method: 'POST', headers: { ...AUTH, ...JSON_HEADERS }, body: JSON.stringify(body) });
  const text = await r.text();
  return { status: r.status, headers: r.headers, json: text ? JSON.parse(text) : undefined };
}

async function all(server: Server): Promise<any[]> {
  const r = await fetch(server.base + PATH, { headers: AUTH });
  assert.is(r.status, 200);
  return (await r.json()) as any[];
}

// Two servers on one data directory and one database, one worker each.
async function twoServers(dataDir: string): Promise<[Server, Server]> {
  const start = () => startServe(dataDir, ['--quiet', '--workers', '1']);
  return Promise.all([start(), start()]);
}

const available = POSTGRES_MISSING === null;
const t = suite<{ cluster: Cluster; db: ReturnType<typeof createDatabase>; parent: string; dataDir: string; servers: Server[] }>('pgstore: two servers on one database');
if (!available) t('should run with PostgreSQL', () => {}), console.log(`SKIPPED: pgstore (${POSTGRES_MISSING})`);

t.before.each((ctx) => {
  if (!available) return;
  ctx.cluster = sharedCluster();
  ctx.db = createDatabase();
  Object.assign(ctx, pgDataDir(ctx.db.url));
  ctx.servers = [];
});
t.after.each(async (ctx) => {
  if (!available) return;
  for (const s of ctx.servers) await stop(s.child);
  ctx.db.drop();
  rmSync(ctx.parent, { recursive: true, force: true });
});

if (available) {
  t('should keep one chain and lose nothing with 8 writers of 50 appends each, spread over both servers', async (ctx) => {
    const servers = await twoServers(ctx.dataDir);
    ctx.servers.push(...servers);
    const answered: any[] = [];
    await Promise.all(Array.from({ length: 8 }, async (_, w) => {
      for (let i = 0; i < 50; i++) {
        const r = await append(servers[(w + i) % 2], { eventType: 'line', body: { w, i } });
        assert.is(r.status, 200, JSON.stringify(r.json));
        answered.push(r.json);
      }
    }));
    for (const server of servers) {
      const events = await all(server);
      assert.is(events.length, 400);
      assertChain(events);
      assert.equal(new Set(events.map((e) => e.hash)), new Set(answered.map((e) => e.hash)));
      // Each writer's appends in the order it made them.
      for (let w = 0; w < 8; w++) assert.equal(events.filter((e) => e.body.w === w).map((e) => e.body.i), [...Array(50).keys()]);
    }
    const verify = runCli(['verify', '--data', ctx.dataDir, '--stream', 'orders']);
    assert.is(verify.status, 0, verify.stderr);
    assert.match(verify.stdout, /ok, 400 event\(s\)/);
  });

  t('should send an event stream on one server the events appended through the other', async (ctx) => {
    const [a, b] = await twoServers(ctx.dataDir);
    ctx.servers.push(a, b);
    const stream = await fetch(b.base + PATH, { headers: { ...AUTH, Accept: 'text/event-stream' } });
    assert.is(stream.status, 200);
    const reader = stream.body!.getReader();
    let text = '';
    const received = (async () => {
      while (!text.includes('"n":3')) {
        const { value, done } = await reader.read();
        if (done) break;
        text += Buffer.from(value).toString('utf8');
      }
    })();
    await waitFor('server B to listen for appends', () => listening(ctx.cluster, ctx.db.name));
    const sent = [];
    for (let n = 1; n <= 3; n++) sent.push((await append(a, { eventType: 'tick', body: { n } })).json);
    await Promise.race([received, new Promise((_, reject) => setTimeout(() => reject(new Error(`B's event stream got only: ${text}`)), 15_000))]);
    await reader.cancel();
    const ids = [...text.matchAll(/^id: (\w+)$/gm)].map((m) => m[1]);
    assert.equal(ids, sent.map((e) => e.hash));
  });

  t('should keep whole batches and every acknowledged one when a server is killed with SIGKILL mid-batch', async (ctx) => {
    const [a, b] = await twoServers(ctx.dataDir);
    ctx.servers.push(a, b);
    const random = seeded('pgstore: kill -9 mid-batch');
    const answered = new Set<string>();
    let failedOnA = 0;
    let answeredOnA = 0;
    // How long a batch takes here, so the kill lands before, inside or after a commit.
    const started = Date.now();
    assert.is((await append(a, batchOf(200, 'warm'))).status, 200);
    const span = Date.now() - started;
    answered.add('warm');
    // Writers on both servers, 12 batches each; A dies after a random few of its own.
    const writers = Array.from({ length: 6 }, async (_, w) => {
      for (let i = 0; i < 12; i++) {
        const server = w % 2 ? b : a;
        const tag = `${w}-${i}`;
        try {
          const r = await append(server, batchOf(200, tag));
          if (r.status === 200) {
            answered.add(tag);
            if (server === a) answeredOnA++;
          } else assert.is(r.status, 503, JSON.stringify(r.json));
        } catch {
          failedOnA++; // A's connection died with it
          assert.is(server, a);
          return;
        }
      }
    });
    const before = 1 + Math.floor(random() * 12);
    await waitFor(`A to answer ${before} batches`, () => answeredOnA >= before);
    await new Promise((r) => setTimeout(r, span * random()));
    await stop(a.child, 'SIGKILL');
    await Promise.all(writers);
    assert.ok(failedOnA > 0, 'A was killed after its writers were done');
    // B goes on.
    assert.is((await append(b, batchOf(3, 'after'))).status, 200);
    answered.add('after');
    const events = await all(b);
    assertChain(events);
    assertWholeBatches(events);
    const present = new Set(events.map((e) => e.body.tag));
    assert.equal([...answered].filter((tag) => !present.has(tag)), [], 'acknowledged batches are missing');
  });

  t('should answer through CGI and both servers from one database, and hide its URL from /info', async (ctx) => {
    const [a, b] = await twoServers(ctx.dataDir);
    ctx.servers.push(a, b);
    const body = JSON.stringify({ eventType: 'cgi', body: 1 });
    const cgi = await runCgi(cgiEnv(ctx.dataDir, 'PUT', PATH, { auth: ALICE, headers: JSON_HEADERS, body }), body);
    assert.is(cgi.status, 200, cgi.text);
    assert.is((await append(b, { eventType: 'server', body: 2 })).status, 200);
    const events = await all(a);
    assert.equal(events.map((e) => e.eventType), ['cgi', 'server']);
    const info = await fetch(`${a.base}/info`, { headers: AUTH });
    assert.not.match(await info.text(), /postgres:|eventStore/);
  });
}
t.run();

const down = suite<{ cluster: Cluster; parent: string; dataDir: string; servers: Server[] }>('pgstore: PostgreSQL restarted under load');
if (!available) down('should run with PostgreSQL', () => {});
else {
  down.before.each((ctx) => {
    // A cluster of its own: the shared one serves other tests meanwhile.
    ctx.cluster = startCluster();
    ctx.cluster.psql('postgres', 'CREATE DATABASE apie');
    Object.assign(ctx, pgDataDir(ctx.cluster.url('apie')));
    ctx.servers = [];
  });
  down.after.each(async (ctx) => {
    for (const s of ctx.servers) await stop(s.child);
    ctx.cluster.destroy();
    rmSync(ctx.parent, { recursive: true, force: true });
  });

  down('should lose nothing acknowledged, answer 503 with Retry-After meanwhile, and recover without a restart of either server', async (ctx) => {
    const [a, b] = await twoServers(ctx.dataDir);
    ctx.servers.push(a, b);
    const answered = new Set<string>();
    const statuses = new Map<number, number>();
    let restarted = false;
    const afterRestart = new Set<Server>();
    let writing = true;
    const writers = Array.from({ length: 8 }, async (_, w) => {
      const server = w % 2 ? b : a;
      for (let i = 0; writing; i++) {
        const tag = `${w}-${i}`;
        const r = await append(server, batchOf(5, tag));
        statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
        if (r.status === 200) {
          answered.add(tag);
          if (restarted) afterRestart.add(server);
        } else {
          assert.is(r.status, 503, JSON.stringify(r.json));
          assert.is(r.headers.get('retry-after'), '1');
          await new Promise((res) => setTimeout(res, 50));
        }
      }
    });
    try {
      await waitFor('appends before the restart', () => answered.size >= 40);
      ctx.cluster.stop('immediate');
      // Both servers answer 503 while it is down, reads as well.
      await waitFor('503s while PostgreSQL is down', () => (statuses.get(503) ?? 0) >= 8);
      const read = await fetch(b.base + PATH, { headers: AUTH });
      assert.is(read.status, 503);
      ctx.cluster.start();
      restarted = true;
      await waitFor('both servers to append again', () => afterRestart.size === 2, 30_000);
    } finally {
      writing = false;
      await Promise.all(writers);
    }
    assert.equal([...statuses.keys()].sort(), [200, 503]);
    const events = await all(a);
    assertChain(events);
    assertWholeBatches(events);
    const present = new Set(events.map((e) => e.body.tag));
    assert.equal([...answered].filter((tag) => !present.has(tag)), [], 'acknowledged batches are missing');
    // A long poll on A is woken by an append on B: the listener reconnected too.
    const last = events.at(-1).hash;
    const poll = fetch(`${a.base}${PATH}?after=${last}&wait=30`, { headers: AUTH });
    await waitFor('A to listen again', () => listening(ctx.cluster, 'apie'));
    const r = await append(b, { eventType: 'woke', body: 1 });
    assert.is(r.status, 200);
    assert.equal(((await (await poll).json()) as any[]).map((e) => e.hash), [r.json.hash]);
  });

  down('should answer 503 through CGI while PostgreSQL is down, and 500 naming `apie migrate` for a database without the schema', async (ctx) => {
    ctx.cluster.stop('fast');
    const get = await runCgi(cgiEnv(ctx.dataDir, 'GET', PATH, { auth: ALICE }));
    assert.is(get.status, 503, get.text);
    assert.is(get.headers['retry-after'], '1');
    assert.match(get.json().errorMessage, /unavailable/);
    assert.not.match(get.text, /postgres:|\/tmp/);
    ctx.cluster.start();
    ctx.cluster.psql('postgres', 'CREATE DATABASE empty');
    const empty = makeDataDir(tempDir(), { config: { eventStore: ctx.cluster.url('empty') } });
    try {
      const r = await runCgi(cgiEnv(empty, 'GET', PATH, { auth: ALICE }));
      assert.is(r.status, 500);
      assert.match(r.json().errorMessage, /apie migrate/);
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });
}
down.run();

const blobs = suite<{ parent: string; dataDir: string; servers: Server[] }>('pgstore: two servers sharing one data directory');
blobs.before.each((ctx) => {
  ctx.parent = tempDir();
  ctx.dataDir = makeDataDir(ctx.parent);
  ctx.servers = [];
});
blobs.after.each(async (ctx) => {
  for (const s of ctx.servers) await stop(s.child);
  rmSync(ctx.parent, { recursive: true, force: true });
});

blobs('should store blobs uploaded through both at once, the same ones too, and read each through either', async (ctx) => {
  const [a, b] = await twoServers(ctx.dataDir);
  ctx.servers.push(a, b);
  // 12 contents, each uploaded twice, once through each server, all at once.
  const contents = Array.from({ length: 12 }, (_, i) => Buffer.alloc(200_000 + i, i));
  const uploads = await Promise.all(contents.flatMap((c, i) => [a, b].map(async (s) => {
    const r = await fetch(`${s.base}/storage/blob-${i}`, { method: 'PUT', headers: { ...AUTH, 'Content-Type': 'application/octet-stream' }, body: c });
    assert.is(r.status < 300, true, await r.clone().text());
    return ((await r.json()) as any).hash as string;
  })));
  for (const [i, c] of contents.entries()) {
    assert.is(uploads[2 * i], uploads[2 * i + 1]);
    for (const s of [a, b]) {
      const r = await fetch(`${s.base}/storage/${uploads[2 * i]}`, { headers: AUTH });
      assert.ok(Buffer.from(await r.arrayBuffer()).equals(c), `blob ${i} through ${s.base}`);
    }
  }
  const verify = runCli(['verify', '--data', ctx.dataDir]);
  assert.is(verify.status, 0, verify.stderr);
  assert.match(verify.stdout, /storage: ok, 12 blob\(s\)/);
});
blobs.run();
