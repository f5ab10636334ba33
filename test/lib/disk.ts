// A small tmpfs mounted over a data directory, to make the disk fill up for
// real (ENOSPC from the kernel, not a mock). Needs root; unmount in finally.
import { execFileSync, spawnSync } from 'node:child_process';
import { chownSync, closeSync, lstatSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';

/** Whether this process may mount a tmpfs (root with CAP_SYS_ADMIN). */
export const CAN_MOUNT = (() => {
  if (process.getuid?.() !== 0) return false;
  const probe = spawnSync('unshare', ['--mount', 'mount', '-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', '/mnt'], { stdio: 'ignore' });
  return probe.status === 0;
})();

export interface Tmpfs {
  /** Fills every free page with a file in the mount; returns the bytes written. */
  fill(): number;
  /** Removes what fill() wrote. */
  free(): void;
  /** Grows (or shrinks) the file system in place. */
  resize(bytes: number): void;
  unmount(): void;
}

/**
 * Mounts a tmpfs of `bytes` over `dir`, keeping the directory's mode and
 * owner and copying its files (apie.json, passwd) onto the new file system.
 */
export function mountOver(dir: string, bytes: number): Tmpfs {
  const st = lstatSync(dir);
  const files = readdirSync(dir).map((name) => {
    const s = lstatSync(join(dir, name));
    if (!s.isFile()) throw new Error(`mountOver: ${name} is not a plain file`);
    return { name, data: readFileSync(join(dir, name)), mode: s.mode & 0o7777, uid: s.uid, gid: s.gid };
  });
  const mode = (st.mode & 0o7777).toString(8);
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${bytes},mode=${mode},uid=${st.uid},gid=${st.gid}`, 'tmpfs', dir]);
  for (const f of files) {
    writeFileSync(join(dir, f.name), f.data, { mode: f.mode });
    chownSync(join(dir, f.name), f.uid, f.gid);
  }
  const filler = join(dir, 'filler');
  return {
    fill() {
      const fd = openSync(filler, 'a');
      const chunk = Buffer.alloc(64 * 1024, 0x66);
      let total = 0;
      try {
        for (;;) total += writeSync(fd, chunk);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
      } finally {
        closeSync(fd);
      }
      return total;
    },
    free() {
      rmSync(filler, { force: true });
    },
    resize(size) {
      execFileSync('mount', ['-o', `remount,size=${size}`, dir]);
    },
    unmount() {
      // Lazily: a server still holding files there is stopped right after.
      execFileSync('umount', ['--lazy', dir]);
    },
  };
}
