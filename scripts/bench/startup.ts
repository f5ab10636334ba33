// CGI start-up: the executable answering GET / without credentials (its 401:
// start-up and request path, no password hashing) against the embedded Node
// runtime's bare start-up (`node -e 0`).
import { statSync } from 'node:fs';
import { EXE, NODE, cgiEnv, dataDir, medians, type Row } from './lib.ts';

export async function run(): Promise<Row[]> {
  const data = dataDir();
  const m = medians([
    { name: 'node', command: `${NODE} -e 0` },
    { name: 'cgi', command: EXE, env: cgiEnv(data, 'GET', '/') },
  ], 60, 10);
  const node = m.get('node')!;
  return [
    { section: 'start-up', what: 'CGI `GET /` → 401 (no credentials)', value: m.get('cgi')!, unit: 'ms', baseline: { what: 'node -e 0', value: node }, goal: 1.15 },
    { section: 'start-up', what: 'executable size', value: statSync(EXE).size / 1024 / 1024, unit: 'MiB' },
  ];
}
