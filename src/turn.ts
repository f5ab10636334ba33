// Checks the server makes once per turn of the event loop rather than once
// per request: whether a small file of the data directory changed
// (filecache.ts), whether another process appended to a log (livelog.ts).
// Every request the server reads in one turn had arrived when that turn's poll
// for I/O returned, so a check made during the turn, after that, sees every
// change made before any of those requests was sent: "an edit counts from the
// next request on" holds as if each request checked for itself. (libuv polls
// again in the same turn only when one poll returned 1024 ready descriptors;
// a request read then may be answered from a check up to that many requests old.)

/** Says when a check is due: at its first use in each turn of the event loop. */
export class OncePerTurn {
  private checked = false;
  private readonly reset = () => {
    this.checked = false;
  };

  /** True at the first call in a turn (the caller checks now); false after, until the next turn. */
  due(): boolean {
    if (this.checked) return false;
    this.checked = true;
    setImmediate(this.reset);
    return true;
  }

  /** The next due() is true again: this process changed what is checked. */
  expire(): void {
    this.checked = false;
  }
}
