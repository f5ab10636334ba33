// Hostile header values and slow clients: what a request can put into the
// response's headers, and how long a client may take to send its own.
import { connect } from 'node:net';
import { rmSync } from 'node:fs';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ALICE, cgiEnv, makeDataDir, runCgi, startServe, stop, tempDir } from '../lib/harness.ts';
import { reportFaults } from '../lib/faults.ts';

let injected = 0;

const t = suite<{ parent: string; dataDir: string }>('cors: origins reflected under "*"');
t.before.each((ctx) => {
  ctx.parent = tempDir();
  ctx.dataDir = makeDataDir(ctx.parent, { config: { corsOrigins: ['*'] } });
});
t.after.each((ctx) => {
  rmSync(ctx.parent, { recursive: true, force: true });
});

// Under CGI the Origin header arrives as an environment variable, which may
// hold anything a web server lets through (or anything, for a test).
const withOrigin = (dataDir: string, origin: string, method = 'GET', path = '/info') => {
  const env = cgiEnv(dataDir, method, path, { auth: ALICE });
  env.HTTP_ORIGIN = origin;
  return runCgi(env);
};

t('should never emit an Origin holding CR, LF or other control characters', async ({ dataDir }) => {
  for (const origin of ['https://a.example\r\nSet-Cookie: session=evil', 'https://a.example\nX-Injected: 1', 'https://a.example\r', 'https://a\u0001.example', 'https://a.example\t']) {
    injected++;
    for (const method of ['GET', 'OPTIONS']) {
      const r = await withOrigin(dataDir, origin, method, method === 'GET' ? '/info' : '/events');
      assert.is(r.headers['set-cookie'], undefined, JSON.stringify(origin));
      assert.is(r.headers['x-injected'], undefined, JSON.stringify(origin));
      assert.is(r.headers['access-control-allow-origin'], undefined, JSON.stringify(origin));
    }
  }
});

t('should reflect only origins of the form scheme://host[:port]', async ({ dataDir }) => {
  for (const origin of ['https://app.example.com', 'http://localhost:5173', 'http://127.0.0.1:8000', 'http://[::1]:8080', 'app-x+y.z://host']) {
    const r = await withOrigin(dataDir, origin);
    assert.is(r.status, 200);
    assert.is(r.headers['access-control-allow-origin'], origin);
  }
  // "null" is what sandboxed frames send: reflecting it with credentials lets any page in.
  for (const origin of ['null', 'https://a.example/', 'https://a.example/path', 'https://user@a.example', 'javascript:alert(1)', 'https://a example', 'https://', '*', 'https://a.example:port']) {
    injected++;
    const r = await withOrigin(dataDir, origin);
    assert.is(r.status, 200);
    assert.is(r.headers['access-control-allow-origin'], undefined, origin);
  }
});

t.run();

// The README promises that headers must arrive within 20 s. The server's
// default check runs every 30 s, so without a shorter interval a client that
// never finishes its headers holds the connection for up to 50 s.
const slow = suite('server: slow headers');

slow('should close a connection whose headers have not arrived after 20 s, well before 25 s', async () => {
  const parent = tempDir();
  const { child, base } = await startServe(makeDataDir(parent), ['--quiet', '--workers', '1']);
  try {
    const { port } = new URL(base);
    injected++;
    const started = Date.now();
    const closed = await new Promise<{ ms: number; reply: string }>((resolve, reject) => {
      const socket = connect(Number(port), '127.0.0.1');
      let reply = '';
      socket.on('data', (d) => (reply += d));
      socket.on('error', () => {});
      socket.on('connect', () => socket.write('GET /info HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: '));
      socket.on('close', () => {
        clearTimeout(timer);
        resolve({ ms: Date.now() - started, reply });
      });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error('the server still held the connection after 25 s'));
      }, 25_000);
    });
    assert.ok(closed.ms >= 19_000, `closed after ${closed.ms} ms: the limit is 20 s, not less`);
    assert.match(closed.reply, /^HTTP\/1\.1 408 /);
  } finally {
    await stop(child);
    rmSync(parent, { recursive: true, force: true });
  }
});

slow.run();

const tally = suite('http: tally');
tally('should have injected hostile headers and a slow client', () => {
  reportFaults('http', injected, 0);
  assert.ok(injected > 0);
});
tally.run();
