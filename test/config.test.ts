// apie.json validation (unit).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { defaults, parseConfig } from '../src/config.ts';

const t = suite('config');

t('should fill in every default for an empty object', () => {
  assert.equal(parseConfig({}), defaults);
});

t('should read octal modes from strings', () => {
  const c = parseConfig({ fileMode: '0600', dirMode: '700' });
  assert.is(c.fileMode, 0o600);
  assert.is(c.dirMode, 0o700);
});

t('should reject unknown keys by name', () => {
  assert.throws(() => parseConfig({ maxUploadBytes: 10, colour: 'red' }), /unknown key "colour"/);
});

t('should reject wrong types, naming the key', () => {
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ maxEventBytes: -1 }, /"maxEventBytes"/],
    [{ maxUploadBytes: '10' }, /"maxUploadBytes"/],
    [{ fileMode: 416 }, /"fileMode"/],
    [{ fileMode: '0999' }, /"fileMode"/],
    [{ bcryptCost: 3 }, /"bcryptCost"/],
    [{ corsOrigins: 'https://a.example' }, /"corsOrigins"/],
    [{ corsOrigins: ['https://a.example/path'] }, /"corsOrigins"/],
    [{ storageBaseUrl: 'ftp://x' }, /"storageBaseUrl"/],
    [{ storageStatic: 'yes' }, /"storageStatic"/],
  ];
  for (const [raw, re] of cases) assert.throws(() => parseConfig(raw), re, JSON.stringify(raw));
});

t('should load and ignore the obsolete lockStaleSeconds, whatever its value', () => {
  // Files written for the old mkdir lock still load; the socket lock has no stale state.
  for (const value of [10, 1, 'x']) assert.equal(parseConfig({ lockStaleSeconds: value }), parseConfig({}));
  assert.not.ok('lockStaleSeconds' in parseConfig({ lockStaleSeconds: 10 }));
});

t('should reject a configuration that is not an object', () => {
  assert.throws(() => parseConfig([]), /JSON object/);
  assert.throws(() => parseConfig(null), /JSON object/);
});

t.run();
