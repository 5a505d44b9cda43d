/**
 * The environment variables a relay reads, which launchers set: the address
 * and the secret of its receiver, and its tuning. In a build pod the image's
 * entrypoint owns the relay's command line, so the environment is how a
 * launcher reaches it.
 *
 * @module
 */

/** Every variable a relay reads, by what it sets. */
export const RELAY_ENV = {
  /** The receiver's URL; removed from the build's environment. */
  url: "PHONEHOME_URL",
  /** The per-build secret; removed from the build's environment. */
  token: "PHONEHOME_TOKEN",
  /** The flow-control window in bytes. */
  window: "PHONEHOME_WINDOW",
  /** How long the first connection may take, in milliseconds. */
  connectTimeout: "PHONEHOME_CONNECT_TIMEOUT",
  /** How long a dropped connection may take to come back, in milliseconds. */
  reconnectGrace: "PHONEHOME_RECONNECT_GRACE",
  /** The interval between liveness pings, in milliseconds. */
  pingInterval: "PHONEHOME_PING_INTERVAL",
  /** How long leftovers may hold the build's output open, in milliseconds. */
  drainGrace: "PHONEHOME_DRAIN_GRACE",
  /** Whether the build gets one pipe for stdout and stderr. */
  merge: "PHONEHOME_MERGE",
  /** Whether the relay fetches the build's source from the receiver first. */
  fetchSource: "PHONEHOME_FETCH_SOURCE",
  /** The largest source the relay accepts, in bytes. */
  sourceLimit: "PHONEHOME_SOURCE_LIMIT",
  /** The CA (PEM text, or a file holding it) that vouches for the receiver's wss:// certificate. */
  tlsCa: "PHONEHOME_TLS_CA",
} as const;

/**
 * The relay's own variables, which the build never sees: the secret and the
 * address (so it cannot forge its own stream), and the CA that goes with them.
 */
export const RELAY_SECRET_ENV: readonly string[] = [
  RELAY_ENV.url,
  RELAY_ENV.token,
  RELAY_ENV.tlsCa,
];
