// npm run bench [section…]: every performance goal, measured against a
// baseline taken in the same run, printed as one Markdown table of ratios.
// Sections live in scripts/bench/<name>.ts and export run(): Promise<Row[]>.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { EXE, ROOT, type Row } from './bench/lib.ts';

const SECTIONS = ['startup', 'auth', 'events', 'streams', 'storage', 'server', 'client', 'index', 'pg'];

if (!existsSync(EXE)) {
  console.error('bench: build first (npm run build)');
  process.exit(1);
}
const wanted = process.argv.slice(2);
const rows: Row[] = [];
for (const name of SECTIONS) {
  if (wanted.length && !wanted.includes(name)) continue;
  const file = join(import.meta.dirname, 'bench', `${name}.ts`);
  if (!existsSync(file)) continue;
  process.stderr.write(`bench: ${name}…\n`);
  const mod = await import(file);
  rows.push(...(await mod.run()));
}

const fmt = (v: number) => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2));
const kind = existsSync(join(ROOT, 'build', 'kind.txt')) ? readFileSync(join(ROOT, 'build', 'kind.txt'), 'utf8').trim() : 'unknown build';
console.log(`\nExecutable: ${kind}\n`);
console.log('| section | measurement | value | baseline (same run) | ratio | goal |');
console.log('|---|---|---|---|---|---|');
let missed = 0;
for (const r of rows) {
  const ratio = r.baseline ? r.value / r.baseline.value : undefined;
  const met = ratio === undefined || r.goal === undefined ? '' : (r.atLeast ? ratio >= r.goal : ratio <= r.goal) ? ' ✓' : ' ✗';
  if (met === ' ✗') missed++;
  console.log(`| ${r.section} | ${r.what} | ${fmt(r.value)} ${r.unit} | ${r.baseline ? `${r.baseline.what}: ${fmt(r.baseline.value)} ${r.unit}` : ''} | ${ratio === undefined ? '' : fmt(ratio)} | ${r.goal === undefined ? '' : `${r.atLeast ? '≥' : '≤'} ${r.goal}${met}`} |`);
}
console.log(missed ? `\n${missed} goal(s) missed` : '\nall goals met');
