// `apie serve` behind a TLS proxy: the URLs it hands out (`Link`, upload
// `url`) must be the ones clients use. X-Forwarded-* are believed only with
// trustProxy (anyone can send them), and publicUrl overrides everything.
import { rmSync } from 'node:fs';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ALICE, makeDataDir, startServe, stop, tempDir, waitFor } from './lib/harness.ts';

const AUTH = { Authorization: `Basic ${Buffer.from(ALICE).toString('base64')}` };
const FORWARDED = { 'X-Forwarded-Proto': 'https', 'X-Forwarded-Host': 'api.example.com', 'X-Forwarded-For': '203.0.113.7' };

// The Link of a paged read and the url of an upload, as the server builds them.
async function urls(base: string, headers: Record<string, string>): Promise<{ link: string; url: string }> {
  const h = { ...AUTH, ...headers };
  for (const n of [1, 2]) {
    const res = await fetch(`${base}/events`, { method: 'PUT', headers: { ...h, 'Content-Type': 'application/json' }, body: JSON.stringify({ eventType: 'n', body: n }) });
    assert.is(res.status, 200);
  }
  const page = await fetch(`${base}/events?limit=1`, { headers: h });
  await page.arrayBuffer();
  const upload = await fetch(`${base}/storage/a.txt`, { method: 'PUT', headers: h, body: 'hello' });
  assert.is(upload.status, 200);
  return { link: page.headers.get('link') ?? '', url: ((await upload.json()) as { url: string }).url };
}

async function withServer(config: Record<string, unknown>, fn: (base: string, log: () => string) => Promise<void>): Promise<void> {
  const parent = tempDir();
  try {
    const server = await startServe(makeDataDir(parent, { config }), ['--workers', '1']);
    try {
      await fn(server.base, server.stderr);
    } finally {
      await stop(server.child);
    }
  } finally {
    rmSync(parent, { recursive: true, force: true });
  }
}

const t = suite('server: behind a proxy');

t('should build URLs from Host and ignore X-Forwarded-* by default', () => withServer({}, async (base, log) => {
  const { link, url } = await urls(base, FORWARDED);
  assert.match(link, new RegExp(`^<${base}/events\\?after=[0-9a-f]{64}&limit=1>; rel="next"$`));
  assert.match(url, new RegExp(`^${base}/storage/[0-9a-f]{64}$`));
  // The access log names the peer, not what a client claims.
  await waitFor('the access log', () => log().includes('/storage/a.txt'));
  assert.match(log(), /^127\.0\.0\.1 PUT \/storage\/a\.txt 200 /m);
  assert.not.match(log(), /203\.0\.113\.7/);
}));

t('should build URLs from X-Forwarded-Proto and -Host with trustProxy', () => withServer({ trustProxy: true }, async (base, log) => {
  const { link, url } = await urls(base, FORWARDED);
  assert.match(link, /^<https:\/\/api\.example\.com\/events\?after=[0-9a-f]{64}&limit=1>; rel="next"$/);
  assert.match(url, /^https:\/\/api\.example\.com\/storage\/[0-9a-f]{64}$/);
  await waitFor('the access log', () => log().includes('/storage/a.txt'));
  assert.match(log(), /^203\.0\.113\.7 PUT \/storage\/a\.txt 200 /m);
  // Without the headers, a trusting server still answers from Host.
  const plain = await urls(base, {});
  assert.ok(plain.url.startsWith(`${base}/storage/`), plain.url);
}));

t('should build URLs from publicUrl whatever the request says', () => withServer({ publicUrl: 'https://example.com/apie/', trustProxy: true }, async (base) => {
  for (const headers of [{}, FORWARDED]) {
    const { link, url } = await urls(base, headers);
    assert.match(link, /^<https:\/\/example\.com\/apie\/events\?after=[0-9a-f]{64}&limit=1>; rel="next"$/);
    assert.match(url, /^https:\/\/example\.com\/apie\/storage\/[0-9a-f]{64}$/);
  }
}));

t.run();
