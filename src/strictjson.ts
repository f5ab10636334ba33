// Request bodies as JSON that comes back exactly as it was meant. JSON.parse
// accepts much that Apie could not store and give back: nesting deep enough
// to overflow the stack of anything recursive that touches it later, numbers a
// double cannot hold (1e999 became null, 12345678901234567890123 lost digits,
// -0 came back as 0 and failed its own retry), invalid UTF-8 (became U+FFFD)
// and duplicate keys (all but the last dropped). One pass over the raw bytes
// refuses all of these with a 400 naming the first; only then does JSON.parse
// run. Iterative, so no input can exhaust the stack here either.
import { ApieError } from './errors.ts';

/**
 * How deep arrays and objects may nest, counting the outermost. Deep enough
 * for any real document; far below what the recursive code after parsing
 * survives (JSON.stringify ~4,100 levels, util.isDeepStrictEqual ~970).
 */
export const MAX_DEPTH = 512;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

// What may follow a backslash in a string (u is handled apart).
const ESCAPES = new Set([...'"\\/bfnrt'].map((c) => c.charCodeAt(0)));

function refuse(message: string): never {
  throw new ApieError('bad-request', message);
}

function invalid(at: number): never {
  refuse(`request body is not valid JSON (at byte ${at})`);
}

// Shown in messages: long literals are cut, so a 400 never echoes megabytes.
function shown(text: string): string {
  return text.length > 40 ? `${text.slice(0, 40)}…` : text;
}

/** Parses JSON request bytes, refusing with 400 what would not survive storing (see the module comment). */
export function parseStrictJson(bytes: Uint8Array): unknown {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  check(buf);
  return JSON.parse(buf.toString('utf8'));
}

// The grammar of RFC 8259 as a loop over the bytes with an explicit stack:
// one entry per open array (null) or object (the keys seen so far).
function check(buf: Buffer): void {
  const stack: (Set<string> | null)[] = [];
  let i = skipSpace(buf, 0);
  for (;;) {
    // A value starts at i.
    const c = buf[i];
    if (c === 0x7b || c === 0x5b) {
      if (stack.length >= MAX_DEPTH) refuse(`JSON nests deeper than ${MAX_DEPTH} levels of arrays and objects (at byte ${i})`);
      const isObject = c === 0x7b;
      stack.push(isObject ? new Set() : null);
      i = skipSpace(buf, i + 1);
      if (buf[i] === (isObject ? 0x7d : 0x5d)) {
        stack.pop();
        i = skipSpace(buf, i + 1);
      } else {
        if (isObject) i = key(buf, i, stack[stack.length - 1]!);
        continue;
      }
    } else if (c === QUOTE) {
      i = skipSpace(buf, string(buf, i));
    } else if (c === 0x2d || (c >= 0x30 && c <= 0x39)) {
      i = skipSpace(buf, number(buf, i));
    } else {
      i = skipSpace(buf, literal(buf, i));
    }
    // After a value: a comma, the end of its container, or the end of the text.
    for (;;) {
      if (stack.length === 0) {
        if (i !== buf.length) invalid(i);
        return;
      }
      const keys = stack[stack.length - 1];
      if (buf[i] === 0x2c) {
        i = skipSpace(buf, i + 1);
        if (keys) i = key(buf, i, keys);
        break;
      }
      if (buf[i] !== (keys ? 0x7d : 0x5d)) invalid(i);
      stack.pop();
      i = skipSpace(buf, i + 1);
    }
  }
}

function skipSpace(buf: Buffer, i: number): number {
  while (buf[i] === 0x20 || buf[i] === 0x0a || buf[i] === 0x0d || buf[i] === 0x09) i++;
  return i;
}

// An object key and its colon; returns where the value starts.
function key(buf: Buffer, i: number, keys: Set<string>): number {
  if (buf[i] !== QUOTE) invalid(i);
  const end = string(buf, i);
  // Escapes make "a" and "\u0061" the same key: compare decoded names.
  const name = plain ? buf.toString('latin1', i + 1, end - 1) : (JSON.parse(buf.toString('utf8', i, end)) as string);
  if (keys.has(name)) refuse(`duplicate key ${shown(JSON.stringify(name))} in a JSON object (at byte ${i}): only one value can be kept`);
  keys.add(name);
  const colon = skipSpace(buf, end);
  if (buf[colon] !== 0x3a) invalid(colon);
  return skipSpace(buf, colon + 1);
}

// Whether the last string scanned was ASCII without escapes (then latin1 decodes it).
let plain = true;

// A string starting at its opening quote; returns the position after the closing one.
function string(buf: Buffer, start: number): number {
  let i = start + 1;
  plain = true;
  for (;;) {
    const c = buf[i];
    if (c === QUOTE) return i + 1;
    if (c === undefined || c < 0x20) invalid(i);
    if (c >= 0x80 || c === BACKSLASH) plain = false;
    if (c === BACKSLASH) {
      const e = buf[i + 1];
      if (e === 0x75) {
        for (let k = 2; k < 6; k++) if (!isHex(buf[i + k])) invalid(i);
        i += 6;
      } else if (ESCAPES.has(e)) {
        i += 2;
      } else {
        invalid(i);
      }
    } else if (c < 0x80) {
      i++;
    } else {
      i = utf8(buf, i);
    }
  }
}

function isHex(c: number | undefined): boolean {
  return c !== undefined && ((c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66));
}

// One multi-byte UTF-8 sequence (RFC 3629: shortest form, no surrogates, at most U+10FFFF).
function utf8(buf: Buffer, i: number): number {
  const c = buf[i];
  let length: number;
  let low = 0x80;
  let high = 0xbf;
  if (c >= 0xc2 && c <= 0xdf) length = 2;
  else if (c >= 0xe0 && c <= 0xef) {
    length = 3;
    if (c === 0xe0) low = 0xa0;
    if (c === 0xed) high = 0x9f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    length = 4;
    if (c === 0xf0) low = 0x90;
    if (c === 0xf4) high = 0x8f;
  } else refuse(`invalid UTF-8 at byte ${i}`);
  for (let k = 1; k < length; k++) {
    const b = buf[i + k];
    if (b === undefined || b < (k === 1 ? low : 0x80) || b > (k === 1 ? high : 0xbf)) refuse(`invalid UTF-8 at byte ${i}`);
  }
  return i + length;
}

const NUMBER_RE = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;

// A number; returns the position after it. Refused unless the double it
// parses to is stored (JSON.stringify) as the same value it was written as.
function number(buf: Buffer, i: number): number {
  let end = i;
  while (end < buf.length && isNumberByte(buf[end])) end++;
  // The common case without a string: an integer of up to 15 digits is exact.
  const digitsFrom = buf[i] === 0x2d ? i + 1 : i;
  if (end - digitsFrom <= 15 && end > digitsFrom && (buf[digitsFrom] !== 0x30 || end === digitsFrom + 1) && allDigits(buf, digitsFrom, end)) {
    if (!(digitsFrom > i && buf[digitsFrom] === 0x30)) return end; // -0 is not
  }
  const text = buf.toString('latin1', i, end);
  const value = Number(text);
  const stored = String(value);
  // What String() writes is always valid JSON: nothing more to check.
  if (stored === text) return end;
  NUMBER_RE.lastIndex = 0;
  if (!NUMBER_RE.test(text) || NUMBER_RE.lastIndex !== text.length) invalid(i);
  if (!Number.isFinite(value) || Object.is(value, -0) || canonical(text) !== canonical(stored)) {
    refuse(`the number ${shown(text)} cannot be stored as sent: it would come back as ${JSON.stringify(value)} (at byte ${i})`);
  }
  return end;
}

function allDigits(buf: Buffer, from: number, to: number): boolean {
  for (let k = from; k < to; k++) if (buf[k] < 0x30 || buf[k] > 0x39) return false;
  return true;
}

function isNumberByte(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x2b || c === 0x2e || c === 0x65 || c === 0x45;
}

// A decimal literal as significant digits and the exponent of the last one:
// "-12.30e2" → "-123e1"; every spelling of zero → "0".
function canonical(text: string): string {
  const m = /^(-?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/.exec(text)!;
  const all = m[2] + (m[3] ?? '');
  const start = all.search(/[1-9]/);
  if (start < 0) return '0';
  const digits = all.slice(start).replace(/0+$/, '');
  const exponent = Number(m[4] ?? 0) - (m[3]?.length ?? 0) + (all.length - start - digits.length);
  return `${m[1]}${digits}e${exponent}`;
}

const LITERALS = ['true', 'false', 'null'].map((word) => [...word].map((c) => c.charCodeAt(0)));

function literal(buf: Buffer, i: number): number {
  for (const word of LITERALS) if (word.every((b, k) => buf[i + k] === b)) return i + word.length;
  invalid(i);
}
