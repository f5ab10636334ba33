// Fault-injection tallies: every suite under test/faults/ reports how many
// faults it injected and how many acknowledged writes went missing, one line
// each, and `npm test` sums the lines into its summary.

/** Prints one tally line that scripts/test.ts adds up: `faults: SUITE: N injected, M acknowledged lost`. */
export function reportFaults(suite: string, injected: number, lost: number): void {
  // On a line of its own: uvu prints a suite's progress marks without a newline.
  console.log(`\nfaults: ${suite}: ${injected} injected, ${lost} acknowledged lost`);
}
