// The executable as it was at an older commit, built once into
// build/baseline/<commit>/ (gitignored) from `git archive`, with this
// checkout's node_modules: a goal stated against "today's" server is measured
// against that build in the same run.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './lib.ts';

/** The path of the executable built at `commit`, building it when it is not there yet. */
export function executableAt(commit: string): string {
  const dir = join(ROOT, 'build', 'baseline', commit);
  const exe = join(dir, 'cgi-bin', 'apie.cgi');
  if (existsSync(exe)) return exe;
  process.stderr.write(`bench: building ${commit} for the baseline (once)…\n`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  execFileSync('sh', ['-c', `git -C "${ROOT}" archive ${commit} | tar -x -C "${dir}"`], { stdio: 'inherit' });
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
  execFileSync(process.execPath, ['scripts/build.ts'], { cwd: dir, stdio: ['ignore', 'ignore', 'inherit'] });
  return exe;
}
