// apie import-apie DIR: imports the event log of an original Apie data
// directory, keeping every hash and every byte. Layout assumed (see README):
// DIR/index lists the entries oldest first, one a line, by file name (the
// entry's hash, usually); each entry file holds the previous hash on its first
// line and the event JSON after it. A chain that does not verify is refused.
import { existsSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { parse } from '../args.ts';
import { loadConfig, resolveDataDir } from '../config.ts';
import { ApieError } from '../errors.ts';
import { appendRaw, chainHash, head, parseEventObject } from '../eventlog.ts';
import { HASH_RE } from '../sha256.ts';
import { DEFAULT_STREAM, parseStreamName, streamDir } from '../streams.ts';

interface OriginalEntry {
  /** Where the entry came from, for messages: "entry 3 (name)". */
  label: string;
  prev: string;
  /** The bytes after the first line, verbatim. */
  rest: Buffer;
  /** A hash the index line or the file name gives for this entry. */
  named?: string;
}

function readEntry(dir: string, line: string, n: number): OriginalEntry {
  const [name, ...more] = line.trim().split(/\s+/);
  const file = [join(dir, name), join(dir, `${name}.json`)].find((f) => existsSync(f));
  const label = `entry ${n} (${name})`;
  if (!file) throw new ApieError('not-found', `${label}: no such file in ${dir}`);
  const bytes = readFileSync(file);
  const nl = bytes.indexOf(0x0a);
  const prev = bytes.toString('latin1', 0, nl < 0 ? bytes.length : nl).replace(/\r$/, '');
  if (nl < 0 || !HASH_RE.test(prev)) throw new ApieError('bad-request', `${label}: the first line is not the previous hash`);
  const named = [basename(file).replace(/\.json$/, ''), ...more].find((t) => HASH_RE.test(t));
  return { label, prev, rest: bytes.subarray(nl + 1), named };
}

// J is the rest of the file; a file written with a final newline that was not
// hashed is recognised by the hash the entry is known by.
function possibleJsons(rest: Buffer): Buffer[] {
  const out = [rest];
  if (rest.at(-1) === 0x0a) out.push(rest.subarray(0, rest.at(-2) === 0x0d ? -2 : -1));
  return out;
}

/** Reads and verifies an original Apie log; returns the chain's start, its events' bytes and its last hash. */
async function readOriginalLog(dir: string): Promise<{ after: string; jsons: Buffer[]; hash: string }> {
  const indexFile = join(dir, 'index');
  if (!existsSync(indexFile)) throw new ApieError('not-found', `${dir} has no index file: not an original Apie data directory`);
  const lines = readFileSync(indexFile, 'utf8').split('\n').filter((l) => l.trim() !== '' && !l.startsWith('#'));
  const entries = lines.map((line, i) => readEntry(dir, line, i + 1));
  const jsons: Buffer[] = [];
  const after = entries[0]?.prev ?? '';
  let prev = after;
  entries.forEach((e, i) => {
    if (e.prev !== prev) throw new ApieError('bad-request', `${e.label}: its previous hash ${e.prev} is not the hash of the entry before it (${prev})`);
    const expected = e.named ?? entries[i + 1]?.prev;
    const json = expected === undefined ? e.rest : possibleJsons(e.rest).find((c) => chainHash(prev, c) === expected);
    if (!json) throw new ApieError('bad-request', `${e.label}: its bytes do not hash to ${expected}: the chain does not verify`);
    if (!parseEventObject(json)) throw new ApieError('bad-request', `${e.label}: the event is not a JSON object`);
    jsons.push(json);
    prev = chainHash(prev, json);
  });
  return { after, jsons, hash: prev };
}

export async function importApie(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, { stream: { type: 'string', default: DEFAULT_STREAM } });
  if (positionals.length !== 1) throw new ApieError('usage', 'import-apie needs one argument: the original Apie data directory');
  const dataDir = resolveDataDir(values.data);
  const config = loadConfig(dataDir);
  const original = await readOriginalLog(positionals[0]);
  if (original.jsons.length === 0) throw new ApieError('bad-request', 'the index lists no entries: nothing to import');
  const dir = streamDir(dataDir, parseStreamName(values.stream));
  const current = head(dir).hash;
  if (current !== original.after) {
    throw new ApieError('conflict', `the imported chain starts after ${original.after}, but this log ends at ${current}; import into an empty log`);
  }
  const result = await appendRaw(dir, config, original.after, original.jsons);
  // Both sides hashed the same bytes: a difference is a bug, not the user's to fix.
  if (result.hash !== original.hash) throw new Error(`imported chain ends at ${result.hash}, expected ${original.hash}`);
  console.log(`apie: imported ${original.jsons.length} event(s); the log has ${result.count}, last hash ${result.hash}`);
  return 0;
}
