// Randomised tests draw from a seed they print, so a failure can be replayed:
// `APIE_TEST_SEED=N npm test -- NAME` (or `APIE_TEST_SEED=N node … test/NAME.test.ts`).
// Each suite draws its own stream from the seed and its name, so running a
// file alone gives it the same numbers as the full run.

const SEED = process.env.APIE_TEST_SEED !== undefined ? Number(process.env.APIE_TEST_SEED) >>> 0 : Math.floor(Math.random() * 2 ** 32);

/** A pseudo-random number generator in [0, 1) for a suite (mulberry32), announcing the seed. */
export function seeded(suite: string): () => number {
  console.log(`  ${suite}: seed ${SEED} (rerun with APIE_TEST_SEED=${SEED})`);
  let state = SEED;
  for (const ch of suite) state = Math.imul(state ^ ch.charCodeAt(0), 0x9e3779b1) >>> 0;
  return mulberry32(state);
}

/** mulberry32: a small generator in [0, 1) that a seed reproduces exactly. */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** n bytes from a generator made by seeded(). */
export function randomBytes(random: () => number, n: number): Buffer {
  const out = Buffer.alloc(n);
  for (let i = 0; i < n; i++) out[i] = Math.floor(random() * 256);
  return out;
}
