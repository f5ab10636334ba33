// The server's copies of the small files it needs on every request
// (apie.json, passwd, token-secret): each is read again only when an lstat
// (inode, size, mtime, ctime) shows it changed, so an edit from the command
// line (`apie user passwd`, a new apie.json, `apie token rotate`) counts from
// the next request on, without a read and parse per request. The lstat is
// made once per turn of the event loop (turn.ts), not per request: a profile
// of `GET /events/H` showed the three lstats per request among its largest
// costs. A CGI process reads each file once instead.
import { lstatSync } from 'node:fs';
import { join } from 'node:path';
import { OncePerTurn } from './turn.ts';

/** One file of the data directory and what was made of it when it was last read. */
export class FileCache<T> {
  private readonly path: string;
  private readonly load: () => T;
  private seen?: string;
  private value?: T;
  private readonly check = new OncePerTurn();

  /** `load` reads and parses the file (through nofollow.ts); what it throws is thrown again, never kept. */
  constructor(dataDir: string, name: string, load: () => T) {
    this.path = join(dataDir, name);
    this.load = load;
  }

  /** The file's content as of now. */
  get(): T {
    if (this.value !== undefined && !this.check.due()) return this.value;
    // Statted before reading: a change made while it is read shows as a new signature next time.
    const s = lstatSync(this.path, { throwIfNoEntry: false });
    const signature = s ? `${s.ino}:${s.size}:${s.mtimeMs}:${s.ctimeMs}:${s.mode}` : '';
    if (signature !== this.seen || this.value === undefined) {
      // What fails to load fails every request until fixed, not just the
      // first of a turn (the others would get the old value).
      this.value = undefined;
      this.value = this.load();
      this.seen = signature;
    }
    return this.value;
  }
}
