// Apie's client: served by the executable at GET /client.js (this module,
// bundled) and GET /client.d.ts (its declarations). Runs in browsers and Node >= 20.
export { Apie } from './apie.ts';
export { ApieClientError } from './transport.ts';
export { memoryStorage } from './storage.ts';
export { fileStorage } from './filestorage.ts';
export { indexedDbStorage } from './idbstorage.ts';
export { EMPTY_HASH } from './chain.ts';
export type * from './types.ts';
