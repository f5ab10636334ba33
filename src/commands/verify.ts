// apie verify: checks passwd, the event chain and the content store; restores
// file modes and repairs what a crash left behind. Exit code 1 when anything is wrong.
import { parse } from '../args.ts';
import { loadConfig, resolveDataDir } from '../config.ts';
import { ApieError } from '../errors.ts';
import { verifyLog } from '../eventlog.ts';
import { readPasswd } from '../passwd.ts';
import { verifyBlobs } from '../blobstore.ts';
import { checkSecret } from '../token.ts';

export async function verify(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {});
  if (positionals.length) throw new ApieError('usage', `unexpected argument "${positionals[0]}"`);
  const dataDir = resolveDataDir(values.data);
  const config = loadConfig(dataDir);
  let ok = true;

  const passwd = readPasswd(dataDir);
  for (const problem of passwd.problems) console.error(`apie verify: ${problem}`);
  ok &&= passwd.problems.length === 0;
  console.log(`passwd: ${passwd.problems.length ? `${passwd.problems.length} problem(s)` : 'ok'}, ${passwd.users.size} user(s)`);

  try {
    const log = await verifyLog(dataDir, config);
    console.log(`events: ok, ${log.count} event(s), last hash ${log.hash}${log.tableRebuilt ? ' (lookup table rebuilt)' : ''}`);
  } catch (err) {
    if (!(err instanceof ApieError && err.code === 'damaged')) throw err;
    console.error(`apie verify: events: ${err.message}`);
    console.log('events: DAMAGED');
    ok = false;
  }

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
