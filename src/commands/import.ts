// apie import-apie DIR [--stream NAME]: imports an original Apie data
// directory (or its event log directory alone), keeping every hash and every
// byte of its events, into a stream (default: default) that must be empty or
// end where the import starts; and its blobs, under their names. Everything
// is read and checked first (original.ts): a refusal writes nothing.
import { createReadStream } from 'node:fs';
import { parse } from '../args.ts';
import { putBlob } from '../blobstore.ts';
import { loadConfig } from '../config.ts';
import { resolveDataDir } from '../datadir.ts';
import { ApieError } from '../errors.ts';
import { openStreams } from '../eventstore.ts';
import { locateOriginal, readOriginalLog, readOriginalMedia } from '../original.ts';
import { DEFAULT_STREAM, parseStreamName } from '../streams.ts';

export async function importApie(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, { stream: { type: 'string', default: DEFAULT_STREAM } });
  if (positionals.length !== 1) throw new ApieError('usage', 'import-apie needs one argument: the original Apie data directory');
  const stream = parseStreamName(values.stream);
  const dataDir = resolveDataDir(values.data);
  const config = loadConfig(dataDir);
  const { logDir, mediaDir } = locateOriginal(positionals[0]);
  const original = readOriginalLog(logDir);
  const blobs = mediaDir === undefined ? [] : await readOriginalMedia(mediaDir);
  if (original.jsons.length === 0 && blobs.length === 0) throw new ApieError('bad-request', 'the original has no events and no blobs: nothing to import');
  const store = openStreams(dataDir, config).stream(stream);
  if (original.jsons.length) {
    const view = await store.view();
    view.close();
    const current = view.head;
    if (current !== original.after) {
      throw new ApieError('conflict', `the imported chain starts after ${original.after}, but the stream ${stream} ends at ${current}; import into an empty stream`);
    }
    const result = await store.appendRaw!(original.after, original.jsons);
    // Both sides hashed the same bytes: a difference is a bug, not the user's to fix.
    if (result.hash !== original.hash) throw new Error(`imported chain ends at ${result.hash}, expected ${original.hash}`);
    console.log(`apie: imported ${original.jsons.length} event(s) into the stream ${stream}; it has ${result.count}, last hash ${result.hash}`);
  }
  for (const blob of blobs) {
    // The original kept no content types; its blobs belong to no user (only admins delete them).
    await putBlob(dataDir, config, createReadStream(blob.file), {
      owner: null, name: blob.name, contentType: 'application/octet-stream', limit: Number.MAX_SAFE_INTEGER, expected: blob.hash,
    });
  }
  if (blobs.length) console.log(`apie: imported ${blobs.length} blob(s)`);
  return 0;
}
