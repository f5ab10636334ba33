// Hostile input, through every front end: JSON nested past the limit, values
// that would not come back as they were sent (numbers, invalid UTF-8,
// duplicate keys), broken CONTENT_LENGTH, one hostile request inside a group
// commit of innocent ones, and tokens of users with long non-ASCII names.
// Every refusal is a 400 that names what was refused and writes nothing; every
// stored event answers an identical retry with 200.
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ApieError } from '../../src/errors.ts';
import { defaults } from '../../src/config.ts';
import { appendEvents, verifyLog, type AppendRequest } from '../../src/eventlog.ts';
import { ALICE, cgiEnv, EXE, FRONT_ENDS, parseCgiOutput, tempDir, type Reply, type Site } from '../lib/harness.ts';
import { allEvents, assertChain, JSON_HEADERS, logHead } from '../lib/events.ts';
import { reportFaults } from '../lib/faults.ts';

// The documented limit: arrays and objects nest at most this deep, the event object included.
const MAX_DEPTH = 512;
let injected = 0;

function putRaw(site: Site, body: string | Buffer, headers: Record<string, string> = {}): Promise<Reply> {
  return site.request('PUT', '/events', { auth: ALICE, headers: { ...JSON_HEADERS, ...headers }, body });
}

// An event whose JSON nests `depth` levels in all: the event object and depth - 1 arrays.
function deepEvent(depth: number, eventId?: string): string {
  const id = eventId ? `"eventId":"${eventId}",` : '';
  return `{${id}"eventType":"deep","body":${'['.repeat(depth - 1)}${']'.repeat(depth - 1)}}`;
}


// Refused values: the raw body text of `body`, and what the 400 must name.
const REFUSED: [string, string | Buffer, string][] = [
  ['a number beyond a double', '1e999', '1e999'],
  ['a negative number beyond a double', '[-1e999]', '-1e999'],
  ['negative zero', '-0', '-0'],
  ['negative zero with a fraction', '{"x":-0.0}', '-0.0'],
  ['an integer a double rounds', '12345678901234567890123', '12345678901234567890123'],
  ['the first integer past 2^53', '9007199254740993', '9007199254740993'],
  ['more digits than a double keeps', '0.10000000000000001', '0.10000000000000001'],
  ['a number that underflows to zero', '1e-400', '1e-400'],
  ['a duplicate key', '{"a":1,"a":2}', '"a"'],
  ['a duplicate key spelled with an escape', '{"ab":1,"\\u0061b":2}', '"ab"'],
  ['a duplicate key in a nested object', '[{"k":{"x":1,"y":2,"x":3}}]', '"x"'],
  ['an invalid UTF-8 byte', Buffer.from([0x22, 0x61, 0xff, 0x62, 0x22]), 'UTF-8'],
  ['an overlong UTF-8 encoding', Buffer.from([0x22, 0xc0, 0xaf, 0x22]), 'UTF-8'],
  ['a UTF-8 encoded surrogate', Buffer.from([0x22, 0xed, 0xa0, 0x80, 0x22]), 'UTF-8'],
  ['a UTF-8 sequence cut short', Buffer.from([0x22, 0xe2, 0x82, 0x22]), 'UTF-8'],
];

// Accepted values that re-encode to the same value (their spelling may change).
const KEPT: [string, string, unknown][] = [
  ['1.0', '1.0', 1],
  ['1e2', '1e2', 100],
  ['1E+2', '1E+2', 100],
  ['0.1', '0.1', 0.1],
  ['1.5e300', '1.5e300', 1.5e300],
  ['the smallest double', '5e-324', 5e-324],
  ['2^53', '9007199254740992', 9007199254740992],
  ['zero spelled long', '0.000e5', 0],
  ['a lone surrogate escape', '"\\ud800"', '\ud800'],
  ['integer-like keys after others', '{"b":1,"1":2}', { b: 1, 1: 2 }],
  ['escapes of ordinary characters', '"\\u00e9\\/\\n"', 'é/\n'],
];

function bodyWith(value: string | Buffer, eventId?: string): Buffer {
  const id = eventId ? `"eventId":"${eventId}",` : '';
  return Buffer.concat([Buffer.from(`{${id}"eventType":"value","body":`), Buffer.from(value), Buffer.from('}')]);
}

for (const fe of FRONT_ENDS) {
  const t = suite<{ site: Site }>(`input: hostile JSON via ${fe.name}`);
  t.before(async (ctx) => {
    ctx.site = await fe.open();
  });
  t.after(async (ctx) => {
    await ctx.site.close();
  });

  t(`should store an event nested exactly ${MAX_DEPTH} deep and answer its identical retry with 200`, async ({ site }) => {
    const eventId = randomUUID();
    const first = await putRaw(site, deepEvent(MAX_DEPTH, eventId));
    assert.is(first.status, 200, first.text);
    const again = await putRaw(site, deepEvent(MAX_DEPTH, eventId));
    assert.is(again.status, 200, again.text);
    assert.is(again.json().hash, first.json().hash);
    const got = await site.request('GET', `/events/${first.json().hash}`, { auth: ALICE });
    assert.is(got.status, 200);
    assert.is(JSON.stringify(got.json().body), '['.repeat(MAX_DEPTH - 1) + ']'.repeat(MAX_DEPTH - 1));
  });

  t(`should refuse JSON nested past ${MAX_DEPTH} levels with 400, writing nothing`, async ({ site }) => {
    const before = await logHead(site);
    // One level over, and the ~4,150 levels that overflowed the stack (8 KB of brackets).
    for (const depth of [MAX_DEPTH + 1, 4150, 100_000]) {
      injected++;
      const r = await putRaw(site, deepEvent(depth));
      assert.is(r.status, 400, `${depth}: ${r.text.slice(0, 200)}`);
      assert.match(r.json().errorMessage, String(MAX_DEPTH));
    }
    // Deep nesting anywhere else in the request counts the same.
    injected++;
    const r = await putRaw(site, `{"eventType":"deep","body":{"a":${'{"a":'.repeat(MAX_DEPTH)}1${'}'.repeat(MAX_DEPTH)}}}`);
    assert.is(r.status, 400, r.text.slice(0, 200));
    assert.equal(await logHead(site), before);
  });

  for (const [what, value, named] of REFUSED) {
    t(`should refuse ${what} with 400 naming it, writing nothing`, async ({ site }) => {
      const before = await logHead(site);
      injected++;
      const r = await putRaw(site, bodyWith(value));
      assert.is(r.status, 400, r.text);
      assert.ok(r.json().errorMessage.includes(named), `"${r.json().errorMessage}" names ${named}`);
      // A retry of the same request is refused the same way.
      const again = await putRaw(site, bodyWith(value, randomUUID()));
      assert.is(again.status, 400, again.text);
      assert.equal(await logHead(site), before);
    });
  }

  t('should refuse a duplicate field of the event itself', async ({ site }) => {
    const before = await logHead(site);
    injected++;
    const r = await putRaw(site, '{"eventType":"a","body":1,"eventType":"b"}');
    assert.is(r.status, 400, r.text);
    assert.match(r.json().errorMessage, '"eventType"');
    assert.equal(await logHead(site), before);
  });

  t('should keep every value that survives re-encoding and answer each identical retry with 200', async ({ site }) => {
    for (const [what, value, expected] of KEPT) {
      const eventId = randomUUID();
      const first = await putRaw(site, bodyWith(value, eventId));
      assert.is(first.status, 200, `${what}: ${first.text}`);
      assert.equal(first.json().body, expected, what);
      const again = await putRaw(site, bodyWith(value, eventId));
      assert.is(again.status, 200, `${what} retried: ${again.text}`);
      assert.is(again.json().hash, first.json().hash, what);
    }
    assertChain(await allEvents(site));
  });

  t('should still refuse a body that is not JSON at all, or is empty', async ({ site }) => {
    for (const body of ['{"eventType":"x","body":1', '', '{"eventType":"x","body":01}', '\ufeff{"eventType":"x","body":1}', '{"eventType":"x","body":1} x']) {
      const r = await putRaw(site, body);
      assert.is(r.status, 400, `${JSON.stringify(body)}: ${r.text}`);
    }
  });
  t.run();
}

// The server commits concurrent appends in groups: a hostile request in a
// group must not fail the others (it used to fail 4-32 of 40 with 500).
const server = FRONT_ENDS.find((f) => f.name === 'server')!;
{
  const t = suite<{ site: Site }>('input: a hostile request among a server group commit');
  t.before(async (ctx) => {
    ctx.site = await server.open();
  });
  t.after(async (ctx) => {
    await ctx.site.close();
  });

  t('should answer every innocent append of the group with 200 and store it', async ({ site }) => {
    const answered: string[] = [];
    for (let round = 0; round < 5; round++) {
      const innocent = Array.from({ length: 40 }, (_, i) => putRaw(site, JSON.stringify({ eventType: 'innocent', body: { round, i } })));
      const hostile = putRaw(site, deepEvent(4150));
      const more = Array.from({ length: 10 }, (_, i) => putRaw(site, JSON.stringify({ eventType: 'innocent', body: { round, i: 40 + i } })));
      const replies = await Promise.all([...innocent, ...more]);
      assert.is((await hostile).status, 400);
      for (const r of replies) {
        assert.is(r.status, 200, r.text);
        answered.push(r.json().hash);
      }
    }
    const all = await allEvents(site);
    assertChain(all);
    const stored = new Set(all.map((e: any) => e.hash));
    const lost = answered.filter((h) => !stored.has(h)).length;
    reportFaults('input: hostile request in a group commit', 5, lost);
    assert.is(lost, 0);
    assert.is(all.length, answered.length);
  });
  t.run();
}

// Beneath the parse-time checks: whatever one request of a batch throws while
// the batch is decided (here: bodies JSON.stringify cannot encode) is that
// request's answer alone; the others are appended as if it had not been there.
{
  const t = suite('input: one failing request in a batch of appends');
  t('should append every other request of the batch and fail only that one', async () => {
    const parent = tempDir();
    try {
      const dir = join(parent, 'data');
      mkdirSync(dir);
      const cyclic: Record<string, unknown> = {};
      cyclic.self = cyclic;
      const hostile = [10n, cyclic];
      const requests: AppendRequest[] = Array.from({ length: 12 }, (_, i) => ({
        events: [{ eventId: randomUUID(), eventType: 'batch', body: i % 6 === 3 ? hostile[i % 2] : { i }, createdBy: 'unit', createdAt: '2026-01-01T00:00:00.000Z' }],
      }));
      const results = await appendEvents(dir, defaults, requests);
      injected += 2;
      assert.equal(results.map((r) => (r instanceof ApieError ? r.code : r.outcome)), requests.map((_, i) => (i % 6 === 3 ? 'internal' : 'appended')));
      const verified = await verifyLog(dir, defaults);
      assert.is(verified.count, 10);
      const last = results.at(-1)!;
      assert.is(!(last instanceof ApieError) && last.outcome === 'appended' && last.events[0].hash, verified.hash);
    } finally {
      rmSync(parent, { recursive: true, force: true });
    }
  });
  t.run();
}

// CONTENT_LENGTH comes from the web server; anything but a plain decimal
// integer is a 400 at once ("1.5" used to spin at 100% CPU forever). stdin
// stays open, as a web server may keep it, so a CGI process that waits for
// more body, or loops, is caught by the timeout rather than by EOF.
function cgiWithLength(dataDir: string, contentLength: string, body: string, method = 'PUT', path = '/events'): Promise<Reply> {
  const env = { ...cgiEnv(dataDir, method, path, { auth: ALICE, headers: JSON_HEADERS, body }), CONTENT_LENGTH: contentLength };
  return new Promise((resolve, reject) => {
    const child = spawn(EXE, [], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    child.stdout.on('data', (d) => out.push(d));
    child.stderr.on('data', () => {});
    child.stdin.on('error', () => {});
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`CONTENT_LENGTH=${JSON.stringify(contentLength)}: no answer within 20 s`));
    }, 20_000);
    child.on('close', () => {
      clearTimeout(timer);
      child.stdin.destroy();
      try {
        resolve(parseCgiOutput(Buffer.concat(out)));
      } catch (err) {
        reject(err);
      }
    });
    child.stdin.write(body);
  });
}

const cgi = FRONT_ENDS.find((f) => f.name === 'cgi')!;
{
  const t = suite<{ site: Site }>('input: CONTENT_LENGTH under cgi');
  t.before(async (ctx) => {
    ctx.site = await cgi.open();
  });
  t.after(async (ctx) => {
    await ctx.site.close();
  });
  const event = JSON.stringify({ eventType: 'sized', body: 1 });

  for (const value of ['1.5', '-1', ' 12', '12 ', '0x10', '1e3', '+12', '12abc', '١٢']) {
    t(`should answer CONTENT_LENGTH=${JSON.stringify(value)} with 400 at once, writing nothing`, async ({ site }) => {
      const before = await logHead(site);
      injected++;
      const r = await cgiWithLength(site.dataDir, value, event);
      assert.is(r.status, 400, r.text);
      assert.match(r.json().errorMessage, /Content-Length/i);
      assert.equal(await logHead(site), before);
    });
  }

  t('should take an empty CONTENT_LENGTH as no body (RFC 3875), without waiting for stdin', async ({ site }) => {
    const before = await logHead(site);
    const put = await cgiWithLength(site.dataDir, '', event);
    assert.is(put.status, 400, put.text);
    assert.equal(await logHead(site), before);
    const get = await cgiWithLength(site.dataDir, '', '', 'GET', '/events');
    assert.is(get.status, 200, get.text);
  });

  t('should read exactly a plain CONTENT_LENGTH, leading zeros included', async ({ site }) => {
    const r = await cgiWithLength(site.dataDir, `00${Buffer.byteLength(event)}`, event);
    assert.is(r.status, 200, r.text);
  });
  t.run();
}

// Over HTTP the web server parses Content-Length itself: the same values are a 400 there too.
for (const fe of FRONT_ENDS.filter((f) => f.name !== 'cgi')) {
  const t = suite<{ site: Site }>(`input: Content-Length via ${fe.name}`);
  t.before(async (ctx) => {
    ctx.site = await fe.open();
  });
  t.after(async (ctx) => {
    await ctx.site.close();
  });
  for (const value of ['1.5', '-1', '0x10', '1e3', '12abc']) {
    t(`should answer Content-Length: ${value} with 400`, async ({ site }) => {
      injected++;
      const url = new URL(site.base);
      const status = await new Promise<number>((resolve, reject) => {
        const socket = connect(Number(url.port), url.hostname);
        let data = '';
        socket.setTimeout(20_000, () => socket.destroy(new Error('no answer within 20 s')));
        socket.on('data', (d) => (data += d));
        socket.on('error', reject);
        socket.on('close', () => resolve(Number(/^HTTP\/1\.[01] (\d{3})/.exec(data)?.[1] ?? 0)));
        socket.write(`PUT ${url.pathname}/events HTTP/1.1\r\nHost: ${url.host}\r\nAuthorization: Basic ${Buffer.from(ALICE).toString('base64')}\r\n` +
          `Content-Type: application/json\r\nContent-Length: ${value}\r\nConnection: close\r\n\r\n{"eventType":"x","body":1}`);
      });
      assert.is(status, 400);
      assert.is((await logHead(site)).count, 0);
    });
  }
  t.run();
}

// A token is `<name in base64url>.<expiry>.<signature>`; a name of 256
// three-byte characters is 1,024 base64url characters, and every issued token must work.
const LONG_NAMES: [string, string][] = [
  ['256 three-byte characters', '€'.repeat(256)],
  ['256 two-byte characters', 'ü'.repeat(256)],
  ['128 astral characters', '😀'.repeat(128)],
  ['mixed scripts', 'Ωμέγα-日本語-'.repeat(20)],
];
for (const fe of FRONT_ENDS) {
  const t = suite<{ site: Site }>(`input: tokens for long non-ASCII names via ${fe.name}`);
  t.before(async (ctx) => {
    ctx.site = await fe.open({ users: Object.fromEntries(LONG_NAMES.map(([, name]) => [name, 'pw'])) });
  });
  t.after(async (ctx) => {
    await ctx.site.close();
  });
  for (const [what, name] of LONG_NAMES) {
    t(`should issue a working token to a user named with ${what}`, async ({ site }) => {
      const issued = await site.request('POST', '/auth/token', { auth: `${name}:pw` });
      assert.is(issued.status, 200, issued.text);
      const { token } = issued.json();
      const r = await site.request('PUT', '/events', {
        headers: { ...JSON_HEADERS, Authorization: `Bearer ${token}` },
        body: JSON.stringify({ eventType: 'by-token', body: null }),
      });
      assert.is(r.status, 200, r.text);
      assert.is(r.json().createdBy, name);
      // A tampered token of the same length still fails.
      const bad = token.slice(0, -1) + (token.endsWith('A') ? 'B' : 'A');
      const refused = await site.request('GET', '/events', { headers: { Authorization: `Bearer ${bad}` } });
      assert.is(refused.status, 401);
    });
  }
  t.run();
}

const report = suite('input: faults');
report('should report the hostile requests sent', () => {
  reportFaults('input', injected, 0);
});
report.run();

