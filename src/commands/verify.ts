// apie verify [--stream NAME]: checks passwd, every stream's chain and the
// content store (or one stream only); restores file modes and repairs what a
// crash left behind. Exit code 1 when anything is wrong.
import { parse } from '../args.ts';
import { loadConfig, resolveDataDir, type Config } from '../config.ts';
import { ApieError } from '../errors.ts';
import { verifyLog } from '../eventlog.ts';
import { readPasswd } from '../passwd.ts';
import { verifyBlobs } from '../blobstore.ts';
import { DEFAULT_STREAM, parseStreamName, streamDir, streamNames } from '../streams.ts';
import { checkSecret } from '../token.ts';

// One stream's chain: a line on stdout, the damage on stderr; whether it is sound.
async function verifyStream(dataDir: string, config: Config, name: string): Promise<boolean> {
  // The stream default keeps the line it had before there were streams.
  const label = name === DEFAULT_STREAM ? 'events' : `stream ${name}`;
  try {
    const log = await verifyLog(streamDir(dataDir, name), config);
    console.log(`${label}: ok, ${log.count} event(s), last hash ${log.hash}${log.tableRebuilt ? ' (lookup table rebuilt)' : ''}`);
    return true;
  } catch (err) {
    if (!(err instanceof ApieError && err.code === 'damaged')) throw err;
    console.error(`apie verify: ${label}: ${err.message}`);
    console.log(`${label}: DAMAGED`);
    return false;
  }
}

export async function verify(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, { stream: { type: 'string' } });
  if (positionals.length) throw new ApieError('usage', `unexpected argument "${positionals[0]}"`);
  const dataDir = resolveDataDir(values.data);
  const config = loadConfig(dataDir);
  if (values.stream !== undefined) return (await verifyStream(dataDir, config, parseStreamName(values.stream))) ? 0 : 1;
  let ok = true;

  const passwd = readPasswd(dataDir);
  for (const problem of passwd.problems) console.error(`apie verify: ${problem}`);
  ok &&= passwd.problems.length === 0;
  console.log(`passwd: ${passwd.problems.length ? `${passwd.problems.length} problem(s)` : 'ok'}, ${passwd.users.size} user(s)`);

  const names = streamNames(dataDir);
  if (!names.includes(DEFAULT_STREAM)) names.unshift(DEFAULT_STREAM);
  for (const name of names) ok = (await verifyStream(dataDir, config, name)) && ok;

  const secretProblem = checkSecret(dataDir);
  if (secretProblem) {
    console.error(`apie verify: ${secretProblem}`);
    ok = false;
  }

  const store = await verifyBlobs(dataDir, config);
  for (const problem of store.corrupt) console.error(`apie verify: storage: ${problem}`);
  ok &&= store.corrupt.length === 0;
  console.log(`storage: ${store.corrupt.length ? `${store.corrupt.length} corrupt blob(s)` : 'ok'}, ${store.count} blob(s)`);

  return ok ? 0 : 1;
}
