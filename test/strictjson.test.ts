// Unit tests of the strict JSON reader (src/strictjson.ts): it must accept
// exactly what JSON.parse accepts, minus what would not survive storing, and
// what it accepts must come back identical after JSON.stringify → JSON.parse.
// Randomised against JSON.parse itself; the seed is printed (APIE_TEST_SEED=… repeats a run).
import { isDeepStrictEqual } from 'node:util';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ApieError } from '../src/errors.ts';
import { MAX_DEPTH, parseStrictJson } from '../src/strictjson.ts';
import { seeded } from './lib/random.ts';

const REFUSAL = /nests deeper|duplicate key|cannot be stored as sent|invalid UTF-8/;

function outcome(bytes: Buffer): { value?: unknown; error?: string } {
  try {
    return { value: parseStrictJson(bytes) };
  } catch (err) {
    assert.instance(err, ApieError);
    assert.is((err as ApieError).code, 'bad-request');
    return { error: (err as Error).message };
  }
}

const t = suite('strictjson: rules');

t('should refuse each kind of value that would change, naming it', () => {
  const cases: [string | Buffer, RegExp][] = [
    ['1e999', /number 1e999 .* null/],
    ['-1E400', /number -1E400 .* null/],
    ['-0', /number -0 .* 0/],
    ['[-0.0e3]', /number -0\.0e3/],
    ['12345678901234567890123', /number 12345678901234567890123 .* 1\.2345678901234568e\+22/],
    ['9007199254740993', /9007199254740993 .* 9007199254740992/],
    ['0.10000000000000001', /0\.10000000000000001 .* 0\.1\b/],
    ['2e-324', /2e-324 .* 0/],
    [`1${'0'.repeat(400)}`, /number 1000000000000000000000000000000000000000… .* null/],
    ['{"a":1,"b":{"c":2,"c":3}}', /duplicate key "c"/],
    ['{"\\u00e9":1,"é":2}', /duplicate key "é"/],
    ['{"":1,"":2}', /duplicate key ""/],
    [Buffer.from([0x22, 0x80, 0x22]), /invalid UTF-8 at byte 1/],
    [Buffer.from([0x22, 0xf4, 0x90, 0x80, 0x80, 0x22]), /invalid UTF-8/], // past U+10FFFF
    [Buffer.from([0x22, 0xe0, 0x80, 0xaf, 0x22]), /invalid UTF-8/], // overlong
    [Buffer.from([0x22, 0xf0, 0x9f, 0x98, 0x22]), /invalid UTF-8/], // cut short
  ];
  for (const [input, message] of cases) {
    const { error } = outcome(Buffer.from(input));
    assert.ok(error, `${input} is refused`);
    assert.match(error!, message);
  }
});

t(`should accept nesting up to ${MAX_DEPTH} levels and refuse one more, without using the stack`, () => {
  const nest = (n: number) => Buffer.from('['.repeat(n) + ']'.repeat(n));
  assert.ok(outcome(nest(MAX_DEPTH)).value);
  assert.match(outcome(nest(MAX_DEPTH + 1)).error!, `deeper than ${MAX_DEPTH}`);
  // Far deeper than any stack: refused, not a RangeError.
  assert.match(outcome(nest(1_000_000)).error!, `deeper than ${MAX_DEPTH}`);
  const objects = (n: number) => Buffer.from('{"a":'.repeat(n) + '1' + '}'.repeat(n));
  assert.ok(outcome(objects(MAX_DEPTH)).value);
  assert.ok(outcome(objects(MAX_DEPTH + 1)).error);
});

t('should keep values that re-encode to themselves, whatever their spelling', () => {
  const cases: [string, unknown][] = [
    ['1.0', 1], ['1e2', 100], ['1E+2', 100], ['100e-2', 1], ['0.1', 0.1], ['-0.5', -0.5], ['0', 0], ['0e999', 0],
    ['1e21', 1e21], ['100000000000000000000000', 1e23], ['5e-324', 5e-324], ['1.7976931348623157e308', Number.MAX_VALUE],
    ['9007199254740992', 2 ** 53], ['-9007199254740991', -(2 ** 53 - 1)],
    ['"\\ud83d\\ude00"', '😀'], ['"\\udc00"', '\udc00'], ['"😀"', '😀'], [' [ 1 , { "a" : [ ] } ] ', [1, { a: [] }]],
    ['{"__proto__":1}', JSON.parse('{"__proto__":1}')],
  ];
  for (const [text, expected] of cases) {
    const { value, error } = outcome(Buffer.from(text));
    assert.is(error, undefined, text);
    assert.ok(isDeepStrictEqual(value, expected), text);
  }
});

// ---- randomised against JSON.parse ------------------------------------------

const random = seeded('strictjson: random documents');
// Only this file's one randomised test draws from it.
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)];

const NUMBERS = ['0', '-0', '1', '-1', '1.5', '0.1', '1e2', '1E-2', '1e999', '-1e-999', '12345678901234567890', '9007199254740993', '0.30000000000000004', '0.3000000000000000444', '00', '01', '1.', '.5', '+1', '1e', '1e+', '-', '2.50', '123456789012345', '1e-7', '4.9e-324', '2e-324'];
const STRINGS = ['""', '"a"', '"é"', '"\\u00e9"', '"\\ud800"', '"\\n\\t\\"\\\\\\/"', '"\\x"', '"\t"', '"😀"', '"\\u12"', '"a'];
const KEYS = ['"a"', '"b"', '"a"', '"\\u0061"', '"é"', '"\\u00e9"', '""', '"1"', '"__proto__"'];

function value(depth: number): string {
  const r = random();
  if (depth > 6 || r < 0.4) return pick([...NUMBERS, ...STRINGS, 'true', 'false', 'null', 'nul', 'True']);
  const n = Math.floor(random() * 4);
  if (r < 0.7) return `[${Array.from({ length: n }, () => value(depth + 1)).join(pick([',', ', ', ',,']))}]`;
  return `{${Array.from({ length: n }, () => `${pick(KEYS)}${pick([':', ' : ', ''])}${value(depth + 1)}`).join(pick([',', ' ,\n']))}}`;
}

// Corrupts a document at random: a byte replaced (invalid UTF-8 among them), cut, or doubled.
function mutate(bytes: Buffer): Buffer {
  const at = Math.floor(random() * (bytes.length + 1));
  const r = random();
  if (r < 0.3) return Buffer.concat([bytes.subarray(0, at), Buffer.from([pick([0x80, 0xc0, 0xed, 0xff, 0x7b, 0x5d, 0x22, 0x2c, 0x00, 0x20])]), bytes.subarray(at + 1)]);
  if (r < 0.5) return bytes.subarray(0, at);
  return Buffer.concat([bytes.subarray(0, at), bytes.subarray(at)]);
}

const fuzz = suite('strictjson: against JSON.parse');

fuzz('should agree with JSON.parse on 20,000 random documents', () => {
  let accepted = 0;
  let refused = 0;
  for (let i = 0; i < 20_000; i++) {
    let bytes: Buffer = Buffer.from(value(0));
    if (random() < 0.3) bytes = mutate(bytes);
    let parsed: { value?: unknown; ok: boolean };
    try {
      parsed = { value: JSON.parse(new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes)), ok: true };
    } catch {
      parsed = { ok: false };
    }
    const strict = outcome(bytes);
    const where = `document ${i}: ${JSON.stringify(bytes.toString('latin1'))}`;
    if (!parsed.ok) {
      // Not JSON (or not UTF-8): refused too.
      assert.ok(strict.error, `${where} is refused`);
      continue;
    }
    if (strict.error) {
      // JSON, but refused: only for a reason the rules name.
      assert.match(strict.error, REFUSAL, where);
      refused++;
      continue;
    }
    accepted++;
    assert.ok(isDeepStrictEqual(strict.value, parsed.value), `${where} parses as JSON.parse does`);
    // What is accepted survives storing: stringify and parse give the very same value.
    assert.ok(isDeepStrictEqual(JSON.parse(JSON.stringify(strict.value)), strict.value), `${where} survives re-encoding`);
  }
  assert.ok(accepted > 1000 && refused > 100, `${accepted} accepted, ${refused} refused by the rules`);
});

t.run();
fuzz.run();
