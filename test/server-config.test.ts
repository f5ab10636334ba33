// `apie serve` keeps apie.json, passwd and the token secret in memory and
// verified Basic logins in a cache: edits from the command line must still
// count from the server's very next request, and the caches must never let
// in what the files no longer let in.
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ALICE, makeDataDir, runCli, startServe, stop, tempDir } from './lib/harness.ts';

interface Ctx {
  parent: string;
  dataDir: string;
  base: string;
  child: import('node:child_process').ChildProcess;
}

const basic = (auth: string) => ({ Authorization: `Basic ${Buffer.from(auth).toString('base64')}` });

async function status(base: string, path: string, headers: Record<string, string>, init: RequestInit = {}): Promise<number> {
  const res = await fetch(base + path, { ...init, headers: { ...headers, 'Content-Type': 'application/json', ...(init.headers as Record<string, string>) } });
  await res.arrayBuffer();
  return res.status;
}

const t = suite<Ctx>('server: cached configuration');
t.before.each(async (ctx) => {
  ctx.parent = tempDir();
  ctx.dataDir = makeDataDir(ctx.parent, { users: { 'alice@example.com': 'secret', 'bob@example.com': 'hunter2' } });
  Object.assign(ctx, await startServe(ctx.dataDir, ['--quiet', '--workers', '1']));
});
t.after.each(async (ctx) => {
  await stop(ctx.child);
  rmSync(ctx.parent, { recursive: true, force: true });
});

t('should take a password changed with `apie user passwd` from the next request on', async ({ base, dataDir }) => {
  // Twice: the second answer may come from the login cache.
  assert.is(await status(base, '/info', basic(ALICE)), 200);
  assert.is(await status(base, '/info', basic(ALICE)), 200);
  const r = runCli(['user', 'passwd', 'alice@example.com', '--data', dataDir], { input: 'changed\n' });
  assert.is(r.status, 0, r.stderr);
  assert.is(await status(base, '/info', basic(ALICE)), 401);
  assert.is(await status(base, '/info', basic('alice@example.com:changed')), 200);
});

t('should refuse a removed user at once, though their login was cached', async ({ base, dataDir }) => {
  assert.is(await status(base, '/info', basic('bob@example.com:hunter2')), 200);
  assert.is(runCli(['user', 'remove', 'bob@example.com', '--data', dataDir]).status, 0);
  assert.is(await status(base, '/info', basic('bob@example.com:hunter2')), 401);
});

t('should never take a wrong password for a cached right one', async ({ base }) => {
  assert.is(await status(base, '/info', basic(ALICE)), 200);
  assert.is(await status(base, '/info', basic('alice@example.com:secreT')), 401);
  assert.is(await status(base, '/info', basic('alice@example.com:secret ')), 401);
  assert.is(await status(base, '/info', basic('bob@example.com:secret')), 401);
  assert.is(await status(base, '/info', basic(ALICE)), 200);
});

t('should take an apie.json edit from the next request on', async ({ base, dataDir }) => {
  const body = JSON.stringify({ eventType: 'note', body: { text: 'x'.repeat(200) } });
  assert.is(await status(base, '/events', basic(ALICE), { method: 'PUT', body }), 200);
  writeFileSync(join(dataDir, 'apie.json'), JSON.stringify({ maxEventBytes: 100 }));
  assert.is(await status(base, '/events', basic(ALICE), { method: 'PUT', body }), 413);
  // A broken apie.json is the operator's to fix, said at once; fixed, it counts at once.
  writeFileSync(join(dataDir, 'apie.json'), '{ not json');
  assert.is(await status(base, '/info', basic(ALICE)), 500);
  writeFileSync(join(dataDir, 'apie.json'), '{}');
  assert.is(await status(base, '/events', basic(ALICE), { method: 'PUT', body }), 200);
});

t('should refuse tokens at once after `apie token rotate`', async ({ base, dataDir }) => {
  const res = await fetch(`${base}/auth/token`, { method: 'POST', headers: basic(ALICE) });
  const bearer = { Authorization: `Bearer ${((await res.json()) as { token: string }).token}` };
  assert.is(await status(base, '/info', bearer), 200);
  assert.is(runCli(['token', 'rotate', '--data', dataDir]).status, 0);
  assert.is(await status(base, '/info', bearer), 401);
});

t('should refuse a token at once after its user\'s password changed, though it was verified before', async ({ base, dataDir }) => {
  const res = await fetch(`${base}/auth/token`, { method: 'POST', headers: basic(ALICE) });
  const bearer = { Authorization: `Bearer ${((await res.json()) as { token: string }).token}` };
  // Twice: the second answer may come from the verified tokens.
  assert.is(await status(base, '/info', bearer), 200);
  assert.is(await status(base, '/info', bearer), 200);
  const r = runCli(['user', 'passwd', 'alice@example.com', '--data', dataDir], { input: 'changed\n' });
  assert.is(r.status, 0, r.stderr);
  assert.is(await status(base, '/info', bearer), 401);
});

t.run();
