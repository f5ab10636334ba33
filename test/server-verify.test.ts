// POST /events/verify on a server must not stall it: the chain is checked a
// chunk at a time without the append lock, so other clients' reads (and
// appends) go on while a long log is verified, and a second verify joins the
// first instead of doubling the work.
import { rmSync } from 'node:fs';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ALICE, makeDataDir, startServe, stop, tempDir } from './lib/harness.ts';

const AUTH = { Authorization: `Basic ${Buffer.from(ALICE).toString('base64')}`, 'Content-Type': 'application/json' };
const EVENTS = 100_000;

const t = suite('server: verify');

t('should keep answering reads while it verifies a 100,000-event log', async () => {
  const parent = tempDir();
  try {
    const server = await startServe(makeDataDir(parent), ['--quiet', '--workers', '1']);
    try {
      const { base } = server;
      let last = '';
      for (let i = 0; i < EVENTS; i += 1000) {
        const batch = Array.from({ length: 1000 }, (_, j) => ({ eventType: 'item', body: { n: i + j, title: `item ${i + j}` } }));
        const res = await fetch(`${base}/events`, { method: 'PUT', headers: AUTH, body: JSON.stringify(batch) });
        assert.is(res.status, 200);
        last = res.headers.get('x-apie-hash')!;
      }
      let done = false;
      const verifies = [1, 2].map(() => fetch(`${base}/events/verify`, { method: 'POST', headers: AUTH }).then(async (r) => ({ status: r.status, body: (await r.json()) as { count: number; hash: string } })));
      void Promise.all(verifies).finally(() => (done = true));
      // Reads answered while the verify runs: a verify that held the event
      // loop would let at most the first of them through before it ends.
      let reads = 0;
      while (!done) {
        const res = await fetch(`${base}/events/${last}`, { headers: AUTH });
        assert.is(res.status, 200);
        await res.arrayBuffer();
        if (!done) reads++;
      }
      assert.ok(reads >= 3, `${reads} reads answered during the verify`);
      for (const v of await Promise.all(verifies)) {
        assert.is(v.status, 200);
        assert.equal(v.body, { status: 'ok', count: EVENTS, hash: last });
      }
    } finally {
      await stop(server.child);
    }
  } finally {
    rmSync(parent, { recursive: true, force: true });
  }
});

t.run();
