/**
 * Rate-limited reporting of refused connections: a flood of them must not
 * drown the build's output in the user's terminal, and must not go unnoticed
 * either, so the first few of each window are told one by one and the rest
 * are counted in one line when the window closes.
 *
 * @module
 */

/** Refusals told one by one in each window. */
export const REFUSALS_LOGGED_PER_WINDOW = 5;

/** The window over which refusals are rate-limited. */
export const REFUSAL_LOG_WINDOW_MS = 10_000;

/** Counts refusals and tells the first few of each window through `log`. */
export class RefusalLog {
  #log: (text: string) => void;
  #inWindow = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;

  /** Creates a log that writes through `log`. */
  constructor(log: (text: string) => void) {
    this.#log = log;
  }

  /**
   * Notes that a connection from `remote` (an address, never anything the
   * client sent) was refused, or closed after its upgrade, for `reason`.
   */
  note(remote: string, reason: string, action: "Refused" | "Closed" = "Refused"): void {
    if (this.#timer === undefined) {
      this.#timer = setTimeout(() => this.#closeWindow(), REFUSAL_LOG_WINDOW_MS);
      // A pending summary must never keep the process alive.
      Deno.unrefTimer(this.#timer);
    }
    if (++this.#inWindow <= REFUSALS_LOGGED_PER_WINDOW) {
      this.#log(`${action} a connection from ${remote}: ${reason}`);
    }
  }

  /** Tells how many refusals went untold, and stops. */
  stop(): void {
    clearTimeout(this.#timer);
    this.#closeWindow();
  }

  #closeWindow(): void {
    const untold = this.#inWindow - REFUSALS_LOGGED_PER_WINDOW;
    if (untold > 0) {
      this.#log(
        `Refused or closed ${untold} more connection${untold === 1 ? "" : "s"} ` +
          `without telling each.`,
      );
    }
    this.#inWindow = 0;
    this.#timer = undefined;
  }
}
