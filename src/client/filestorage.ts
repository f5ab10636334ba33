// Storage in one file, for Node: a journal of changes, one JSON line each,
// appended and fdatasynced before save() resolves. Reading replays it; a last
// line cut short by a crash is the change that was never acknowledged, and is
// ignored. When the journal has grown well past what it holds, it is rewritten
// (temporary file, fsync, rename, fsync of the directory). One process at a time.
import { applyChange, type LocalRecord } from './storage.ts';
import type { ClientStorage, StorageChange } from './types.ts';

const COMPACT_BYTES = 1 << 20;

type FsPromises = typeof import('node:fs/promises');

/** Storage that survives restarts and crashes, in the file at `path` (Node only). */
export function fileStorage(path: string): ClientStorage {
  let state: Promise<{ fs: FsPromises; records: Map<string, LocalRecord>; size: number }> | undefined;
  let queue: Promise<unknown> = Promise.resolve();

  // Loaded on first use, so that browsers never meet node:fs.
  const open = () => (state ??= (async () => {
    const fs: FsPromises = await import('node:fs/promises');
    const records = new Map<string, LocalRecord>();
    let text = '';
    try {
      text = await fs.readFile(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    const lines = text.split('\n');
    for (const [i, line] of lines.entries()) {
      if (!line) continue;
      let entry: StorageChange & { key: string };
      try {
        entry = JSON.parse(line);
      } catch (err) {
        if (i === lines.length - 1) break;
        throw new Error(`${path}: line ${i + 1} is damaged`, { cause: err });
      }
      records.set(entry.key, applyChange(records.get(entry.key) ?? { pending: [] }, entry));
    }
    return { fs, records, size: Buffer.byteLength(text) };
  })());

  async function write(s: Awaited<ReturnType<typeof open>>, text: string, replace: boolean): Promise<void> {
    const { fs } = s;
    const target = replace ? `${path}.tmp` : path;
    const handle = await fs.open(target, replace ? 'w' : 'a', 0o600);
    try {
      await handle.writeFile(text);
      await handle.datasync();
    } finally {
      await handle.close();
    }
    if (!replace) return;
    await fs.rename(target, path);
    const dir = await fs.open(path.replace(/[^/]*$/, '') || '.', 'r');
    await dir.sync().finally(() => dir.close());
  }

  return {
    load: async (key) => (await open()).records.get(key) ?? { pending: [] },
    save: (key, change) => {
      const done = queue.then(async () => {
        const s = await open();
        const record = applyChange(s.records.get(key) ?? { pending: [] }, change);
        s.records.set(key, record);
        const line = `${JSON.stringify({ key, ...change })}\n`;
        if (s.size + line.length > COMPACT_BYTES) {
          const whole = [...s.records].map(([k, r]) => `${JSON.stringify({ key: k, add: r.pending, replica: r.replica })}\n`).join('');
          if (whole.length * 4 < s.size) {
            await write(s, whole, true);
            s.size = whole.length;
            return;
          }
        }
        await write(s, line, false);
        s.size += line.length;
      });
      queue = done.catch(() => {});
      return done;
    },
  };
}
