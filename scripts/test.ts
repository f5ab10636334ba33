// npm test: type-check, build the executable when sources are newer, run every
// uvu suite, and end with one summary line: "tests: N passed, N failed, N skipped".
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..');
const exe = join(root, 'cgi-bin', 'apie.cgi');

function newest(dir: string): number {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}

function step(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) {
    console.log(`tests: 0 passed, 1 failed (${cmd} ${args.join(' ')} failed)`);
    process.exit(1);
  }
}

step('tsc', ['-p', '.']);
if (!existsSync(exe) || statSync(exe).mtimeMs < Math.max(newest(join(root, 'src')), statSync(join(root, 'package.json')).mtimeMs)) {
  step(process.execPath, [join(root, 'scripts', 'build.ts')]);
}

// Any arguments narrow the run: `npm test -- events` runs test/events*.test.ts.
const pattern = process.argv[2] ? `${process.argv[2]}.*\\.test\\.ts$` : '\\.test\\.ts$';
const child = spawn('uvu', ['test', pattern, '--color=false'], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
let out = '';
child.stdout.on('data', (d) => {
  out += d;
  process.stdout.write(d);
});
child.on('close', (code) => {
  const num = (label: string) => Number(new RegExp(`${label}:\\s+(\\d+)`).exec(out)?.[1] ?? 0);
  // uvu's Total counts the tests that ran; skipped ones are counted apart.
  const total = num('Total');
  const passed = num('Passed');
  const skipped = num('Skipped');
  const failed = code === 0 ? total - passed : Math.max(1, total - passed);
  let injected = 0;
  let lost = 0;
  for (const m of out.matchAll(/^faults: .*?: (\d+) injected, (\d+) acknowledged lost$/gm)) {
    injected += Number(m[1]);
    lost += Number(m[2]);
  }
  if (injected > 0) console.log(`\nfaults: ${injected} injected, ${lost === 0 ? 'nothing acknowledged was lost' : `${lost} acknowledged writes LOST`}`);
  console.log(`\ntests: ${passed} passed, ${failed} failed, ${skipped} skipped`);
  process.exit(code === 0 && failed === 0 && passed > 0 ? 0 : 1);
});
