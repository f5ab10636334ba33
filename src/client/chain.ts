// Hashes on the client: the hash chain's links, blob digests and eventIds.
// WebCrypto is missing outside secure contexts (a plain-http page), so the
// chain and the fallbacks use Apie's own plain-JavaScript SHA-256.
import { sha256 } from '../sha256.ts';
import type { StoredEvent } from './types.ts';

const encoder = new TextEncoder();

export function hex(bytes: Uint8Array): string {
  let out = '';
  for (const b of bytes) out += b.toString(16).padStart(2, '0');
  return out;
}

/** H(0): the hash of the empty log, sha256(""). */
export const EMPTY_HASH = hex(sha256(new Uint8Array(0)));

/**
 * Whether `event` is the link right after `prev`: H = sha256(prev + "\n" + J),
 * J being the event's JSON without its hash, as the server wrote it. A retried
 * append is answered with the event stored earlier, which may sit elsewhere.
 */
export function follows(prev: string, event: StoredEvent): boolean {
  const { hash, ...stored } = event;
  return hex(sha256(encoder.encode(`${prev}\n${JSON.stringify(stored)}`))) === hash;
}

/** The SHA-256 of bytes: WebCrypto where there is one. */
export async function digest(bytes: Uint8Array): Promise<Uint8Array> {
  const subtle = globalThis.crypto?.subtle;
  return subtle ? new Uint8Array(await subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>)) : sha256(bytes);
}

/** A random UUID v4. */
export function uuid(): string {
  if (globalThis.crypto?.randomUUID) return globalThis.crypto.randomUUID();
  const b = globalThis.crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = hex(b);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
