// The plain-JavaScript SHA-256/HMAC used for bearer tokens, against node:crypto.
import { createHash, createHmac } from 'node:crypto';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { constantTimeEqual, hmacSha256, sha256 } from '../src/sha256.ts';
import { randomBytes, seeded } from './lib/random.ts';

const t = suite('sha256');
const random = seeded('sha256');
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

t('should match the FIPS 180-4 examples', () => {
  assert.is(hex(sha256(Buffer.from(''))), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  assert.is(hex(sha256(Buffer.from('abc'))), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  assert.is(hex(sha256(Buffer.from('abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq'))), '248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1');
});

t('should match node:crypto for every length around the block boundaries and beyond', () => {
  for (let n = 0; n <= 300; n++) {
    const data = randomBytes(random, n);
    assert.is(hex(sha256(data)), createHash('sha256').update(data).digest('hex'), `length ${n}`);
  }
});

t('should match node:crypto HMAC for short, block-sized and long keys (RFC 2104)', () => {
  for (const keyLength of [0, 1, 32, 63, 64, 65, 200]) {
    for (const messageLength of [0, 1, 55, 56, 64, 150]) {
      const key = randomBytes(random, keyLength);
      const message = randomBytes(random, messageLength);
      assert.is(hex(hmacSha256(key, message)), createHmac('sha256', key).update(message).digest('hex'), `key ${keyLength}, message ${messageLength}`);
    }
  }
});

t('should compare equal bytes as equal and any difference as unequal', () => {
  const a = randomBytes(random, 43);
  assert.ok(constantTimeEqual(a, Buffer.from(a)));
  for (const i of [0, 21, 42]) {
    const b = Buffer.from(a);
    b[i] ^= 1;
    assert.not.ok(constantTimeEqual(a, b));
  }
  assert.not.ok(constantTimeEqual(a, a.subarray(1)));
});

t.run();
