/**
 * The relay settings a launcher passes on to the relay it starts, typed, and
 * turned into the relay's own flags (a local relay) or environment (a build
 * pod, whose image owns the command line). The relay's command line declares
 * these flags under the names here, so a renamed flag cannot fall out of step
 * with what launchers send.
 *
 * @module
 */

import { RELAY_ENV } from "../protocol/mod.ts";

/** What a launcher tunes in its relay. */
export interface RelayTuningValues {
  /** Flow-control window in bytes. */
  readonly windowBytes: number;
  /** How often to ping the receiver. */
  readonly pingIntervalMs: number;
  /** How long to keep trying after a dropped connection. */
  readonly reconnectGraceMs: number;
  /** How long leftovers may hold the build's output open after it exits. */
  readonly drainGraceMs: number;
  /** Give the build one pipe for stdout and stderr. */
  readonly merge: boolean;
  /** Fetch the build's source from the receiver, and unpack it, before starting the build. */
  readonly fetchSource: boolean;
  /** The largest source (archive) accepted, in bytes. */
  readonly sourceLimitBytes: number;
}

/** Each tuning setting's relay flag (without dashes) and environment variable. */
export const RELAY_TUNING = {
  windowBytes: { flag: "window", env: RELAY_ENV.window },
  pingIntervalMs: { flag: "ping-interval", env: RELAY_ENV.pingInterval },
  reconnectGraceMs: { flag: "reconnect-grace", env: RELAY_ENV.reconnectGrace },
  drainGraceMs: { flag: "drain-grace", env: RELAY_ENV.drainGrace },
  merge: { flag: "merge", env: RELAY_ENV.merge },
  fetchSource: { flag: "fetch-source", env: RELAY_ENV.fetchSource },
  sourceLimitBytes: { flag: "source-limit", env: RELAY_ENV.sourceLimit },
} as const satisfies { readonly [K in keyof RelayTuningValues]: { flag: string; env: string } };

const SETTINGS = Object.keys(RELAY_TUNING) as Array<keyof RelayTuningValues>;

/** The relay settings of one build, ready to be passed on. */
export class RelayTuning {
  /** The settings. */
  readonly values: RelayTuningValues;

  /** Wraps `values`. */
  constructor(values: RelayTuningValues) {
    this.values = values;
  }

  /** As relay flags: `--window=2097152`, `--merge=true`. */
  toArgs(): string[] {
    return SETTINGS.map((key) => `--${RELAY_TUNING[key].flag}=${this.values[key]}`);
  }

  /** As the environment variables the relay reads for the same flags. */
  toEnv(): Record<string, string> {
    return Object.fromEntries(
      SETTINGS.map((key) => [RELAY_TUNING[key].env, String(this.values[key])]),
    );
  }
}
