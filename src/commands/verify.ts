// apie verify [--stream NAME]: checks passwd, every stream's chain and the
// content store (or one stream only); restores file modes and repairs what a
// crash left behind. Exit code 1 when anything is wrong. Symbolic links in
// the data directory are listed as damage and never followed, so running it
// as root cannot chmod or read a file elsewhere.
import { parse } from '../args.ts';
import { loadConfig, type Config } from '../config.ts';
import { resolveDataDir } from '../datadir.ts';
import { ApieError } from '../errors.ts';
import { openStreams, type Streams } from '../eventstore.ts';
import { checkWritable } from '../hostfaults.ts';
import { readPasswd } from '../passwd.ts';
import { verifyBlobs } from '../blobstore.ts';
import { DEFAULT_STREAM, parseStreamName } from '../streams.ts';
import { checkSecret } from '../token.ts';

// Damage is reported and the next part checked; anything else is a failure of verify itself.
function damaged(err: unknown): string {
  if (err instanceof ApieError && err.code === 'damaged') return err.message;
  throw err;
}

// One stream's chain: a line on stdout, the damage on stderr; whether it is sound.
async function verifyStream(streams: Streams, name: string): Promise<boolean> {
  // The stream default keeps the line it had before there were streams.
  const label = name === DEFAULT_STREAM ? 'events' : `stream ${name}`;
  try {
    const log = await streams.stream(name).verify();
    console.log(`${label}: ok, ${log.count} event(s), last hash ${log.hash}${log.tableRebuilt ? ' (lookup table rebuilt)' : ''}`);
    return true;
  } catch (err) {
    console.error(`apie verify: ${label}: ${damaged(err)}`);
    console.log(`${label}: DAMAGED`);
    return false;
  }
}

export async function verify(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, { stream: { type: 'string' } });
  if (positionals.length) throw new ApieError('usage', `unexpected argument "${positionals[0]}"`);
  const dataDir = resolveDataDir(values.data);
  // verify restores modes and repairs: a data directory it cannot write is the first thing to say.
  checkWritable(dataDir, [dataDir]);
  let config: Config;
  try {
    config = loadConfig(dataDir);
  } catch (err) {
    // Without the configuration the modes to restore are unknown: stop here.
    console.error(`apie verify: ${damaged(err)}`);
    return 1;
  }
  const streams = openStreams(dataDir, config);
  if (values.stream !== undefined) return (await verifyStream(streams, parseStreamName(values.stream))) ? 0 : 1;
  let ok = true;

  try {
    const passwd = readPasswd(dataDir);
    for (const problem of passwd.problems) console.error(`apie verify: ${problem}`);
    ok &&= passwd.problems.length === 0;
    console.log(`passwd: ${passwd.problems.length ? `${passwd.problems.length} problem(s)` : 'ok'}, ${passwd.users.size} user(s)`);
  } catch (err) {
    console.error(`apie verify: ${damaged(err)}`);
    console.log('passwd: DAMAGED');
    ok = false;
  }

  let names: string[] = [];
  try {
    names = await streams.names();
  } catch (err) {
    console.error(`apie verify: events: ${damaged(err)}`);
    ok = false;
  }
  if (!names.includes(DEFAULT_STREAM)) names.unshift(DEFAULT_STREAM);
  for (const name of names) ok = (await verifyStream(streams, name)) && ok;

  const secretProblem = checkSecret(dataDir);
  if (secretProblem) {
    console.error(`apie verify: ${secretProblem}`);
    ok = false;
  }

  const store = await verifyBlobs(dataDir, config);
  for (const problem of store.problems) console.error(`apie verify: storage: ${problem}`);
  ok &&= store.problems.length === 0;
  console.log(`storage: ${store.problems.length ? `${store.problems.length} problem(s)` : 'ok'}, ${store.count} blob(s)`);

  return ok ? 0 : 1;
}
