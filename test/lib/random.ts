// Seeded randomness for randomised tests: the seed is printed, and
// APIE_SEED=<seed> repeats a run exactly.

/** A random number generator in [0, 1) and its seed (from APIE_SEED, else new). */
export function seeded(): { seed: number; random: () => number } {
  const seed = Number(process.env.APIE_SEED ?? Math.floor(Math.random() * 2 ** 31));
  let state = seed;
  // A 32-bit linear congruential generator: plenty for test data, and repeatable.
  return { seed, random: () => (state = (Math.imul(state, 1103515245) + 12345) >>> 0) / 2 ** 32 };
}
