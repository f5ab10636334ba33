// apie migrate: brings the schema of the configured PostgreSQL event store up
// to date (creates it in an empty database).
// apie migrate --to postgres://… | DIR [--stream NAME]: copies every stream
// (or one) of this data directory's event store, the files or PostgreSQL,
// into another: a database, or the files of the data directory DIR. Exact
// bytes, so every hash stays. Resumable: a target stream that holds a prefix
// of the source's continues after it (anything else there is refused), and
// each slice is committed as it is copied. Verified at the end: the target
// recomputes every hash of each stream, and its count and last hash must be
// the source's. Events appended to the source meanwhile are copied by the next run.
import { resolve } from 'node:path';
import { parse } from '../args.ts';
import { isPostgresUrl, loadConfig, type Config } from '../config.ts';
import { resolveDataDir } from '../datadir.ts';
import { ApieError } from '../errors.ts';
import { directStreams, openStreams, type EventStore, type Streams } from '../eventstore.ts';
import { parseStreamName } from '../streams.ts';

// Events per slice: one read of the source, one commit to the target.
const SLICE = 5000;

/** Copies what `to` lacks of `from`'s stream, then has `to` verify it; returns what was copied and what was there. */
async function copyStream(from: EventStore, to: EventStore): Promise<{ copied: number; kept: number; count: number; hash: string }> {
  const source = await from.view();
  const target = await to.view();
  try {
    if (target.count > source.count) {
      throw new ApieError('conflict', `the target's stream ${to.name} holds ${target.count} events, the source's ${source.count}: it is another log`);
    }
    if (target.count > 0 && (await source.read(target.count)).hash !== target.head) {
      throw new ApieError('conflict', `the target's stream ${to.name} differs from the source at event ${target.count}: it is another log`);
    }
    let last = target.head;
    for (let first = target.count + 1; first <= source.count; first += SLICE) {
      const events = await source.readRange(first, Math.min(source.count, first + SLICE - 1));
      const done = await to.appendRaw!(last, events.map((e) => e.json));
      last = events[events.length - 1].hash;
      if (done.hash !== last) throw new ApieError('damaged', `stream ${to.name}: event ${first + events.length - 1} got hash ${done.hash} in the target, ${last} in the source`);
    }
    const verified = await to.verify();
    if (verified.count !== source.count || verified.hash !== source.head) {
      throw new ApieError('damaged', `stream ${to.name}: the target holds ${verified.count} events ending at ${verified.hash}, the source ${source.count} ending at ${source.head}`);
    }
    return { copied: source.count - target.count, kept: target.count, count: verified.count, hash: verified.hash };
  } finally {
    source.close();
    target.close();
  }
}

// The store `--to` names: a database (its schema brought up to date first), or a data directory's files.
async function targetStreams(to: string, config: Config): Promise<{ streams: Streams; label: string }> {
  if (isPostgresUrl(to)) {
    await (await import('../pgstore/schema.ts')).migrateDatabase(to);
    return { streams: openStreams('', { ...config, eventStore: to }), label: (await import('../pgstore/connect.ts')).redact(to) };
  }
  const dir = resolve(to);
  return { streams: directStreams(dir, config), label: dir };
}

export async function migrate(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, { to: { type: 'string' }, stream: { type: 'string' } });
  if (positionals.length) throw new ApieError('usage', `unexpected argument "${positionals[0]}"`);
  const dataDir = resolveDataDir(values.data);
  const config = loadConfig(dataDir);
  if (values.to === undefined) {
    if (values.stream !== undefined) throw new ApieError('usage', '--stream needs --to');
    if (config.eventStore === null) throw new ApieError('usage', 'no "eventStore" is configured (apie.json or APIE_EVENT_STORE): give --to to move the events');
    const { from, to } = await (await import('../pgstore/schema.ts')).migrateDatabase(config.eventStore);
    console.log(from === to ? `event store: schema version ${to}, up to date` : from === 0 ? `event store: schema version ${to} created` : `event store: schema version ${from} → ${to}`);
    return 0;
  }
  const sameStore = isPostgresUrl(values.to) ? values.to === config.eventStore : config.eventStore === null && resolve(values.to) === dataDir;
  if (sameStore) throw new ApieError('usage', '--to names the store the events are in already');
  const source = openStreams(dataDir, config);
  const target = await targetStreams(values.to, config);
  try {
    const names = values.stream !== undefined ? [parseStreamName(values.stream)] : await source.names();
    for (const name of names) {
      const r = await copyStream(source.stream(name), target.streams.stream(name));
      console.log(`stream ${name}: ${r.copied} event(s) copied${r.kept ? `, ${r.kept} there already` : ''}; verified: ${r.count} event(s), last hash ${r.hash}`);
    }
    console.log(`migrated ${names.length} stream(s) to ${target.label}`);
  } finally {
    await source.close?.();
    await target.streams.close?.();
  }
  return 0;
}
