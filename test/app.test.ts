// HTTP rules of handle() itself, called in-process (fast): errors as JSON with
// their headers and CORS, HEAD, preflight, authentication before routing. The
// contract tables run the same rules through the real front ends.
import { mkdirSync, openSync, rmSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ALICE, makeDataDir, tempDir } from './lib/harness.ts';
import { request } from './lib/app.ts';
import { H0 } from './lib/events.ts';

const APP = 'https://app.example.com';

interface Ctx {
  parent: string;
  dataDir: string;
}

// Each test gets its own data directory, removed afterwards.
function appSuite(name: string) {
  const t = suite<Ctx>(name);
  t.before.each((ctx) => {
    ctx.parent = tempDir();
    ctx.dataDir = makeDataDir(ctx.parent, { config: { corsOrigins: [APP] } });
  });
  t.after.each((ctx) => {
    rmSync(ctx.parent, { recursive: true, force: true });
  });
  return t;
}

const append = (dataDir: string, body: unknown, headers: Record<string, string> = {}) =>
  request(dataDir, 'PUT', '/events', { auth: ALICE, headers: { 'Content-Type': 'application/json', ...headers }, body: JSON.stringify(body) });

const errors = appSuite('app: errors');

errors('should answer every refusal as a JSON error with its status, its headers and CORS for an allowed origin', async ({ dataDir }) => {
  const first = (await append(dataDir, { eventType: 'x', body: 1, eventId: '7d444840-9dc0-41d3-aa4b-e5c3f3a4e6f1' })).json();
  const cases: [string, string, { auth?: string; body?: unknown; headers?: Record<string, string> }, number, Record<string, string>][] = [
    ['GET', '/events', {}, 401, { 'www-authenticate': 'Basic realm="Apie", charset="UTF-8"' }],
    ['GET', '/no/such/path', { auth: ALICE }, 404, {}],
    ['DELETE', '/info', { auth: ALICE }, 405, { allow: 'GET, HEAD, OPTIONS' }],
    ['GET', '/events?colour=blue', { auth: ALICE }, 400, {}],
    ['PUT', '/events', { auth: ALICE, body: { eventType: 'y', body: 2 }, headers: { 'If-Match': H0 } }, 412, { 'x-apie-hash': first.hash, etag: `"${first.hash}"` }],
    ['PUT', '/events', { auth: ALICE, body: { eventType: 'other', body: 1, eventId: first.eventId } }, 409, {}],
  ];
  for (const [method, path, opts, status, headers] of cases) {
    const what = `${method} ${path} ${status}`;
    const r = await request(dataDir, method, path, {
      auth: opts.auth,
      headers: { Origin: APP, ...opts.headers },
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
    });
    assert.is(r.status, status, what);
    assert.is(r.headers['content-type'], 'application/json', what);
    assert.equal(Object.keys(r.json()), ['status', 'errorMessage'], what);
    assert.is(r.json().status, 'error', what);
    for (const [k, v] of Object.entries(headers)) assert.is(r.headers[k], v, `${what}: ${k}`);
    assert.is(r.headers['access-control-allow-origin'], APP, what);
  }
});

errors('should answer an unexpected failure with 500 and "internal error", the stack going to the log only', async ({ dataDir }) => {
  // A passwd that cannot be read as a file: no error Apie expects.
  rmSync(join(dataDir, 'passwd'));
  mkdirSync(join(dataDir, 'passwd'));
  const r = await request(dataDir, 'GET', '/info', { auth: ALICE, headers: { Origin: APP } });
  assert.is(r.status, 500);
  assert.equal(r.json(), { status: 'error', errorMessage: 'internal error' });
  assert.is(r.headers['access-control-allow-origin'], APP);
  assert.match(r.stderr, /EISDIR/);
  assert.match(r.stderr, /\n\s+at /); // the stack, for the operator
});

errors('should answer a damaged log with 500 naming the event, not the files', async ({ dataDir }) => {
  for (let i = 0; i < 3; i++) assert.is((await append(dataDir, { eventType: 'x', body: i })).status, 200);
  damageFirstRecord(dataDir);
  const r = await request(dataDir, 'GET', '/events', { auth: ALICE });
  assert.is(r.status, 500);
  assert.match(r.json().errorMessage, /^the event log is damaged at event 1: /);
  assert.not.ok(r.text.includes(dataDir), 'no path');
});

errors.run();

// The first byte of the first record's hash, made a non-hex character.
function damageFirstRecord(dataDir: string): void {
  const fd = openSync(join(dataDir, 'events', 'log'), 'r+');
  writeSync(fd, 'z', 0);
  closeSync(fd);
}

const head = appSuite('app: HEAD');

head('should answer HEAD as GET without a body, with the Content-Length GET has', async ({ dataDir }) => {
  for (const path of ['/', '/info']) {
    const get = await request(dataDir, 'GET', path, { auth: ALICE });
    const r = await request(dataDir, 'HEAD', path, { auth: ALICE });
    assert.is(r.status, 200, path);
    assert.is(r.body.length, 0, path);
    assert.is(r.headers['content-length'], String(get.body.length), path);
    assert.is(r.headers['content-type'], get.headers['content-type'], path);
  }
});

head('should answer HEAD /events with the count and last hash without loading the events', async ({ dataDir }) => {
  const hashes: string[] = [];
  for (let i = 0; i < 3; i++) hashes.push((await append(dataDir, { eventType: 'x', body: i })).json().hash);
  damageFirstRecord(dataDir);
  // GET reads every event and finds the damage; HEAD reads none of them.
  assert.is((await request(dataDir, 'GET', '/events', { auth: ALICE })).status, 500);
  const r = await request(dataDir, 'HEAD', '/events', { auth: ALICE });
  assert.is(r.status, 200);
  assert.is(r.headers['x-apie-count'], '3');
  assert.is(r.headers.etag, `"${hashes[2]}"`);
  assert.is(r.body.length, 0);
});

head.run();

const cors = appSuite('app: CORS');

cors('should answer a preflight without credentials, and an unknown path with 404, both with CORS headers', async ({ dataDir }) => {
  const pre = await request(dataDir, 'OPTIONS', '/events', { headers: { Origin: APP, 'Access-Control-Request-Method': 'PUT' } });
  assert.is(pre.status, 204);
  assert.is(pre.headers.allow, 'GET, PUT, POST, HEAD, OPTIONS');
  assert.is(pre.headers['access-control-allow-methods'], 'GET, PUT, POST, HEAD, OPTIONS');
  assert.is(pre.headers['access-control-allow-origin'], APP);
  const unknown = await request(dataDir, 'OPTIONS', '/nope', { headers: { Origin: APP } });
  assert.is(unknown.status, 404);
  assert.is(unknown.headers['access-control-allow-origin'], APP);
  const refused = await request(dataDir, 'OPTIONS', '/events', { headers: { Origin: 'https://evil.example.net' } });
  assert.is(refused.headers['access-control-allow-origin'], undefined);
  assert.is(refused.headers.vary, 'Origin');
});

cors.run();

const routing = appSuite('app: routing');

routing('should ask for credentials before telling whether a path or method exists', async ({ dataDir }) => {
  for (const [method, path] of [['GET', '/nope'], ['DELETE', '/info'], ['PATCH', '/events']]) {
    const r = await request(dataDir, method, path);
    assert.is(r.status, 401, `${method} ${path}`);
  }
  assert.is((await request(dataDir, 'GET', '/nope', { auth: ALICE })).status, 404);
});

routing.run();
