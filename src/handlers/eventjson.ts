// What the JSON answers and the event stream share: a stored event as it
// goes on the wire, and the position of the event a request names by hash.
import { ApieError } from '../errors.ts';
import type { StoredEvent } from '../eventlog.ts';
import type { EventView } from '../eventstore.ts';

// The original Apie hashed its events with a last member `"hash":null`.
const NULL_HASH = /"hash"\s*:\s*null\s*\}\s*$/;

/**
 * J with its hash spliced in before the closing brace (or in place of the
 * original Apie's `"hash":null`, so an imported event reads as it did there):
 * no parse, no re-encode.
 */
export function withHash(e: StoredEvent): Buffer[] {
  const tail = e.json.toString('latin1', Math.max(0, e.json.length - 32));
  const nullHash = NULL_HASH.exec(tail);
  if (nullHash) return [e.json.subarray(0, e.json.length - tail.length + nullHash.index), Buffer.from(`"hash":"${e.hash}"}`)];
  const close = e.json.lastIndexOf(0x7d);
  let before = close - 1;
  while (before >= 0 && /\s/.test(String.fromCharCode(e.json[before]))) before--;
  const sep = e.json[before] === 0x7b ? '' : ',';
  return [e.json.subarray(0, close), Buffer.from(`${sep}"hash":"${e.hash}"}`)];
}

/** One event as its JSON answer. */
export function eventBody(e: StoredEvent): Buffer {
  return Buffer.concat(withHash(e));
}

/** The position of the event with this hash; 404 when the log has none. */
export async function seqOf(view: EventView, hash: string): Promise<number> {
  const seq = await view.seqOfHash(hash);
  if (seq === undefined) throw new ApieError('not-found', `no event with hash ${hash}`);
  return seq;
}
