// What authentication costs a CGI request: `GET /info` with Basic auth at
// bcrypt cost 5 and 10, and with a bearer token (an HMAC, no bcrypt), each
// against the embedded Node runtime's bare start-up (`node -e 0`).
import { rmSync } from 'node:fs';
import { dirname } from 'node:path';
import { EXE, NODE, basicAuth, bearerAuth, cgiEnv, dataDir, medians, type Row } from './lib.ts';

export async function run(): Promise<Row[]> {
  const cost5 = dataDir({}, undefined, 5);
  const cost10 = dataDir({}, { 'bench@example.com': 'bench', 'other@example.com': 'other' }, 10);
  const info = (data: string, authorization: string) => cgiEnv(data, 'GET', '/info', { Authorization: authorization });
  // The token with another name in it, whose signature then fits neither: a known name and an unknown one.
  const bearer = bearerAuth(cost10);
  const renamed = (name: string) => bearer.replace(/ [^.]+\./, ` ${Buffer.from(name).toString('base64url')}.`);
  const m = medians([
    { name: 'node', command: `${NODE} -e 0` },
    { name: 'basic5', command: EXE, env: info(cost5, basicAuth()), expect: 200 },
    { name: 'basic10', command: EXE, env: info(cost10, basicAuth()), expect: 200 },
    { name: 'bearer', command: EXE, env: info(cost10, bearer), expect: 200 },
    { name: 'forged', command: EXE, env: info(cost10, renamed('other@example.com')), expect: 401 },
    { name: 'unknown', command: EXE, env: info(cost10, renamed('nobody@example.com')), expect: 401 },
  ], 40, 5);
  for (const d of [cost5, cost10]) rmSync(dirname(d), { recursive: true, force: true });
  const baseline = { what: 'node -e 0', value: m.get('node')! };
  return [
    { section: 'auth', what: 'CGI `GET /info`, Basic auth, bcrypt cost 5', value: m.get('basic5')!, unit: 'ms', baseline },
    { section: 'auth', what: 'CGI `GET /info`, Basic auth, bcrypt cost 10', value: m.get('basic10')!, unit: 'ms', baseline },
    { section: 'auth', what: 'CGI `GET /info`, bearer token', value: m.get('bearer')!, unit: 'ms', baseline, goal: 1.2 },
    { section: 'auth', what: 'CGI bearer token of a name passwd does not have (401)', value: m.get('unknown')!, unit: 'ms', baseline: { what: 'a known name, wrong signature (401)', value: m.get('forged')! } },
  ];
}
