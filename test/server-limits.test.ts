// `apie serve` under abuse and at shutdown: past its caps on connections and
// on waiting requests it answers 503 with Retry-After and stays up; a SIGTERM
// with appends in flight loses none that it acknowledged.
import { connect, type Socket } from 'node:net';
import { rmSync } from 'node:fs';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ALICE, cgiEnv, makeDataDir, runCgi, runCli, startServe, stop, tempDir, waitFor } from './lib/harness.ts';
import { H0 } from './lib/events.ts';

const AUTH = { Authorization: `Basic ${Buffer.from(ALICE).toString('base64')}` };

async function get(base: string, path: string): Promise<Response> {
  const res = await fetch(base + path, { headers: AUTH });
  await res.arrayBuffer();
  return res;
}

// An open, idle TCP connection to the server: it counts against the cap.
function idle(base: string): Promise<Socket> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => resolve(socket));
    socket.once('error', reject);
  });
}

async function withServer(args: string[], fn: (base: string, dataDir: string, child: import('node:child_process').ChildProcess) => Promise<void>): Promise<void> {
  const parent = tempDir();
  try {
    const dataDir = makeDataDir(parent);
    const server = await startServe(dataDir, ['--quiet', ...args]);
    try {
      await fn(server.base, dataDir, server.child);
    } finally {
      await stop(server.child);
    }
  } finally {
    rmSync(parent, { recursive: true, force: true });
  }
}

const t = suite('server: caps and shutdown');

t('should answer 503 with Retry-After past --max-connections, and serve again once clients leave', () => withServer(['--workers', '1', '--max-connections', '3'], async (base) => {
  // No request before: fetch would keep its connection open, and one accepted under the cap is served.
  const held = await Promise.all([idle(base), idle(base), idle(base)]);
  try {
    // Connections are counted as the server accepts them: wait until it has the three.
    const refused = await waitFor('a 503 past the cap', async () => {
      const res = await get(base, '/info');
      return res.status === 503 ? res : undefined;
    });
    assert.is(refused.headers.get('retry-after'), '1');
    assert.is(refused.headers.get('connection'), 'close');
  } finally {
    for (const s of held) s.destroy();
  }
  await waitFor('the server serving again', async () => (await get(base, '/info')).status === 200);
}));

t('should answer 503 with Retry-After past its share of waiting requests', () => withServer(['--workers', '1', '--max-connections', '2'], async (base) => {
  // Two connections: one may wait (three quarters of the cap, at least one).
  const poll = fetch(`${base}/events?after=${H0}&wait=30`, { headers: AUTH });
  await waitFor('the long poll to be waiting', async () => (await get(base, `/events?after=${H0}&wait=1`)).status === 503);
  const refused = await get(base, `/events?after=${H0}&wait=1`);
  assert.is(refused.status, 503);
  assert.is(refused.headers.get('retry-after'), '1');
  // Short requests still pass, and the waiting one is answered by an append.
  const put = await fetch(`${base}/events`, { method: 'PUT', headers: { ...AUTH, 'Content-Type': 'application/json' }, body: '{"eventType":"wake","body":{}}' });
  assert.is(put.status, 200);
  const woken = await poll;
  assert.is(woken.status, 200);
  assert.is(((await woken.json()) as unknown[]).length, 1);
}));

t('should keep every acknowledged one of 60 appends in flight at SIGTERM, in a log that verifies', () => withServer([], async (base, dataDir, child) => {
  const sends = Array.from({ length: 60 }, (_, i) => fetch(`${base}/events`, {
    method: 'PUT',
    headers: { ...AUTH, 'Content-Type': 'application/json' },
    body: JSON.stringify({ eventType: 'inflight', body: { i } }),
  }).then(async (res) => (res.status === 200 ? ((await res.json()) as { hash: string }).hash : null), () => null));
  // The first answer means the others reached the server too.
  await Promise.race(sends);
  child.kill('SIGTERM');
  const acknowledged = (await Promise.all(sends)).filter((h): h is string => h !== null);
  assert.ok(acknowledged.length > 0);
  await new Promise((resolve) => (child.exitCode === null ? child.once('exit', resolve) : resolve(null)));
  assert.is(child.exitCode, 0);
  const listed = await runCgi(cgiEnv(dataDir, 'GET', '/events', { auth: ALICE }));
  assert.is(listed.status, 200);
  const stored = new Set((listed.json() as { hash: string }[]).map((e) => e.hash));
  for (const hash of acknowledged) assert.ok(stored.has(hash), `acknowledged ${hash} is in the log`);
  const verify = runCli(['verify', '--data', dataDir]);
  assert.is(verify.status, 0, verify.stdout + verify.stderr);
  assert.match(verify.stdout, new RegExp(`events: ok, ${stored.size} event`));
}));

t.run();
