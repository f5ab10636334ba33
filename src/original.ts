// Reading what the original Apie left on disk, for `apie import-apie`. Its
// data directory holds `apie.json`, whose `eventlog.path` (`events/default/`)
// and `contentstore.path` (`media/`) say where the rest is:
//   <eventlog>/index                         one line an event, oldest first:
//                                            `<10-digit sequence> <hash>`
//   <eventlog>/<ab>/<hash>/<sequence>.json   the previous hash, a newline, and
//                                            the exact JSON that was hashed
//   <contentstore>/<ab>/<hash>/<NAME>        a blob under its download name
// (ab: the hash's first two characters). Also read: an index whose lines name
// their entry files directly (`<name>`, `<name>.json`), the layout this
// importer first guessed. Everything is checked here, before anything is
// written: the chain, every event being a JSON object, every blob's bytes.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { hashFile, nameProblem } from './blobstore.ts';
import { ApieError } from './errors.ts';
import { chainHash, parseEventObject } from './eventlog.ts';
import { ifExists, statOrNull } from './fsutil.ts';
import { HASH_RE } from './sha256.ts';

/** An original event log, verified: where its chain starts, its events' exact bytes, and its last hash. */
export interface OriginalLog {
  after: string;
  jsons: Buffer[];
  hash: string;
}

/** A blob of the original, its bytes checked against its hash. */
export interface OriginalBlob {
  hash: string;
  name: string;
  file: string;
}

interface OriginalEntry {
  /** Where the entry came from, for messages: "entry 3 (name)". */
  label: string;
  prev: string;
  /** The bytes after the first line, verbatim. */
  rest: Buffer;
  /** A hash the index line or the file name gives for this entry. */
  named?: string;
}

/**
 * Finds the event log (and content store) of what the user pointed at: an
 * original data directory (with apie.json), or an event log directory itself
 * (with index; no blobs then).
 */
export function locateOriginal(dir: string): { logDir: string; mediaDir?: string } {
  if (existsSync(join(dir, 'index'))) return { logDir: dir };
  const configFile = join(dir, 'apie.json');
  if (!existsSync(configFile)) throw new ApieError('not-found', `${dir} has neither an index file nor an apie.json: not an original Apie data directory or event log`);
  let raw: { eventlog?: { path?: unknown }; contentstore?: { path?: unknown } };
  try {
    raw = JSON.parse(readFileSync(configFile, 'utf8'));
  } catch (err) {
    throw new ApieError('bad-request', `${configFile} is not valid JSON`, { cause: err });
  }
  const path = (value: unknown, fallback: string) => resolve(dir, typeof value === 'string' ? value : fallback);
  const logDir = path(raw?.eventlog?.path, 'events/default/');
  if (!existsSync(join(logDir, 'index'))) throw new ApieError('not-found', `${logDir} has no index file: the original's event log is not there`);
  return { logDir, mediaDir: path(raw?.contentstore?.path, 'media/') };
}

function readEntry(dir: string, line: string, n: number): OriginalEntry {
  const [name, ...more] = line.trim().split(/\s+/);
  const hash = more.find((t) => HASH_RE.test(t));
  // The original's own layout first, then a file named on the line.
  const files = [...(hash ? [join(dir, hash.slice(0, 2), hash, `${name}.json`)] : []), join(dir, name), join(dir, `${name}.json`)];
  const file = files.find((f) => statOrNull(f)?.isFile());
  const label = `entry ${n} (${name})`;
  if (!file) throw new ApieError('not-found', `${label}: no such file in ${dir}`);
  const bytes = readFileSync(file);
  const nl = bytes.indexOf(0x0a);
  const prev = bytes.toString('latin1', 0, nl < 0 ? bytes.length : nl).replace(/\r$/, '');
  if (nl < 0 || !HASH_RE.test(prev)) throw new ApieError('bad-request', `${label}: the first line is not the previous hash`);
  const named = [hash, basename(file).replace(/\.json$/, ''), ...more].find((t) => t !== undefined && HASH_RE.test(t));
  return { label, prev, rest: bytes.subarray(nl + 1), named };
}

// J is the rest of the file; a file written with a final newline that was not
// hashed is recognised by the hash the entry is known by.
function possibleJsons(rest: Buffer): Buffer[] {
  const out = [rest];
  if (rest.at(-1) === 0x0a) out.push(rest.subarray(0, rest.at(-2) === 0x0d ? -2 : -1));
  return out;
}

/** Reads and verifies an original event log; a broken chain is refused naming the first bad entry. */
export function readOriginalLog(dir: string): OriginalLog {
  const lines = readFileSync(join(dir, 'index'), 'utf8').split('\n').filter((l) => l.trim() !== '' && !l.startsWith('#'));
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

const list = (dir: string) => (ifExists(() => readdirSync(dir)) ?? []).sort();

/** The blobs of an original content store, each file's bytes checked against the hash it is filed under. */
export async function readOriginalMedia(dir: string): Promise<OriginalBlob[]> {
  const blobs: OriginalBlob[] = [];
  for (const fan of list(dir)) {
    for (const hash of list(join(dir, fan))) {
      if (!HASH_RE.test(hash) || !hash.startsWith(fan)) continue;
      const names = list(join(dir, fan, hash)).filter((n) => statOrNull(join(dir, fan, hash, n))?.isFile());
      // The same bytes uploaded under several names are one blob: it keeps the first name.
      if (!names.length) continue;
      const file = join(dir, fan, hash, names[0]);
      const actual = await hashFile(file);
      if (actual !== hash) throw new ApieError('bad-request', `blob ${hash} (${names[0]}): its bytes hash to ${actual}`);
      blobs.push({ hash, name: nameProblem(names[0]) === null ? names[0] : '', file });
    }
  }
  return blobs;
}
