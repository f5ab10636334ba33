// `apie migrate --to`: a log moved from the files to PostgreSQL and back keeps
// every byte and every hash (the log file comes back identical); a migration
// killed midway continues where it stopped; a target that holds another log
// is refused.
import { spawn } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import * as assert from 'uvu/assert';
import { suite } from 'uvu';
import { EXE, makeDataDir, runCli, tempDir, waitFor } from './lib/harness.ts';
import { writeOriginalApie } from './lib/events.ts';
import { createDatabase, POSTGRES_MISSING, sharedCluster } from './lib/postgres.ts';

const N = 100_000;

// n events shaped as the API stores them, with bodies of every JSON kind (and a newline in a string).
function jsons(n: number, tag: string): string[] {
  const bodies = [{ title: 'milk' }, [1, 'two', null], 'text ü ✓\nline', null, { nested: { deep: [true, 1.5e300] } }];
  return Array.from({ length: n }, (_, i) => JSON.stringify({
    eventId: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`, eventType: `${tag}-${i}`, body: bodies[i % bodies.length],
    createdBy: 'alice@example.com', createdAt: '2026-01-01T00:00:00.000Z',
  }));
}

// A data directory with `events` imported into `stream`.
function importInto(dataDir: string, events: string[], stream: string): void {
  const original = tempDir('apie-original-');
  try {
    writeOriginalApie(join(original, 'o'), events);
    const r = runCli(['import-apie', join(original, 'o'), '--stream', stream, '--data', dataDir]);
    assert.is(r.status, 0, r.stderr);
  } finally {
    rmSync(original, { recursive: true, force: true });
  }
}

const cli = (dataDir: string, ...args: string[]) => runCli([...args, '--data', dataDir]);

const t = suite<{ parent: string; db: ReturnType<typeof createDatabase> }>('migrate: files to PostgreSQL and back');
if (POSTGRES_MISSING !== null) t('should run with PostgreSQL', () => {});
else {
  t.before.each((ctx) => {
    ctx.parent = tempDir();
    ctx.db = createDatabase();
  });
  t.after.each((ctx) => {
    ctx.db.drop();
    rmSync(ctx.parent, { recursive: true, force: true });
  });

  t(`should move a log of ${N} events to PostgreSQL, resume after a kill -9, and bring it back byte for byte`, async (ctx) => {
    const files = makeDataDir(join(ctx.parent, 'files'));
    importInto(files, jsons(N, 'big'), 'default');
    importInto(files, jsons(3, 'news'), 'news');
    const streams = cli(files, 'streams');
    assert.is(streams.status, 0, streams.stderr);

    // Killed once some slices are committed and before the last one.
    const cluster = sharedCluster();
    const count = () => Number(cluster.psql(ctx.db.name, "SELECT coalesce(max(count), 0) FROM apie_streams WHERE name = 'default'").trim() || 0);
    const first = spawn(EXE, ['migrate', '--to', ctx.db.url, '--data', files], { stdio: 'ignore' });
    const exited = new Promise((res) => first.once('exit', res));
    try {
      await waitFor('a migration under way', () => {
        try {
          return count() > 0;
        } catch {
          return false; // the schema is being made
        }
      }, 60_000);
    } finally {
      first.kill('SIGKILL');
      await exited;
    }
    const partial = count();
    assert.ok(partial > 0 && partial < N, `killed at ${partial} of ${N}`);
    const resumed = cli(files, 'migrate', '--to', ctx.db.url);
    assert.is(resumed.status, 0, resumed.stderr);
    assert.match(resumed.stdout, new RegExp(`stream default: ${N - partial} event\\(s\\) copied, ${partial} there already; verified: ${N} event\\(s\\)`));
    assert.match(resumed.stdout, /stream news: 3 event\(s\) copied; verified: 3 event\(s\)/);

    // The database as a data directory's store lists the same streams, heads and hashes.
    const pg = makeDataDir(join(ctx.parent, 'pg'), { config: { eventStore: ctx.db.url } });
    assert.is(cli(pg, 'streams').stdout, streams.stdout);
    assert.is(cli(pg, 'verify').status, 0);
    // Run again: nothing left to copy.
    assert.match(cli(files, 'migrate', '--to', ctx.db.url).stdout, /stream default: 0 event\(s\) copied, 100000 there already/);

    const back = join(ctx.parent, 'back', 'apie-data');
    const returned = cli(pg, 'migrate', '--to', back);
    assert.is(returned.status, 0, returned.stderr);
    assert.is(runCli(['streams', '--data', back]).stdout, streams.stdout);
    for (const log of ['events/log', 'events/streams/news/log']) {
      assert.ok(readFileSync(join(back, log)).equals(readFileSync(join(files, log))), `${log} differs`);
    }
  });

  t('should refuse a target whose stream is another log, and migrate one stream alone', async (ctx) => {
    const files = makeDataDir(join(ctx.parent, 'files'));
    importInto(files, jsons(5, 'mine'), 'orders');
    const other = makeDataDir(join(ctx.parent, 'other'), { config: { eventStore: ctx.db.url } });
    assert.is(cli(other, 'migrate').status, 0);
    importInto(other, jsons(2, 'theirs'), 'orders');
    const refused = cli(files, 'migrate', '--to', ctx.db.url);
    assert.is(refused.status, 1);
    assert.match(refused.stderr, /stream orders differs from the source at event 2: it is another log/);
    assert.not.match(refused.stderr, /postgres:/);
    // One stream by name, into a database of its own.
    const only = createDatabase();
    try {
      importInto(files, jsons(1, 'skip'), 'skipped');
      const r = cli(files, 'migrate', '--to', only.url, '--stream', 'orders');
      assert.is(r.status, 0, r.stderr);
      assert.match(r.stdout, /^stream orders: 5 event\(s\) copied; verified: 5 event\(s\)/);
      assert.is(sharedCluster().psql(only.name, 'SELECT name FROM apie_streams').trim(), 'orders');
    } finally {
      only.drop();
    }
    // The same store is no target.
    assert.is(cli(files, 'migrate', '--to', files).status, 2);
  });
}
t.run();
