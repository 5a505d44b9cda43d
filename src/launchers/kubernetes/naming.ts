/**
 * Names and labels of a build's Kubernetes objects: pod names follow the old
 * builder's rule, and labels let `phonehome gc` find what a build left behind.
 *
 * @module
 */

/** Longest name a pod may have and still be a valid host name (a DNS-1123 label). */
export const MAX_POD_NAME_LENGTH = 63;

/** A Job's pods are named `<job>-<5 characters>`, so a Job's name leaves room for that. */
export const MAX_JOB_NAME_LENGTH = MAX_POD_NAME_LENGTH - 6;

/** The standard label saying which tool manages an object. */
export const MANAGED_BY_LABEL = "app.kubernetes.io/managed-by";

/** The value of {@linkcode MANAGED_BY_LABEL} on everything phonehome creates. */
export const MANAGED_BY_VALUE = "phonehome";

/** Label carrying the build's name (the Pod's or Job's), on the Pod, Job and Secret. */
export const BUILD_LABEL = "phonehome/build";

/** Label carrying the application's name, when one was given. */
export const APP_LABEL = "phonehome/app";

/** The label selector that finds everything phonehome created. */
export const MANAGED_SELECTOR = `${MANAGED_BY_LABEL}=${MANAGED_BY_VALUE}`;

/** The key of the build's secret inside its Secret object. */
export const SECRET_TOKEN_KEY = "token";

/** The key of the build's Secret that holds the per-build CA certificate, when there is one. */
export const SECRET_CA_KEY = "ca.crt";

const RANDOM_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789";

/** `length` random characters from [a-z0-9]. */
export function randomSuffix(length: number): string {
  let out = "";
  while (out.length < length) {
    for (const byte of crypto.getRandomValues(new Uint8Array(length))) {
      // 252 is the largest multiple of 36 that fits a byte; drawing only below it keeps
      // every character equally likely.
      if (byte < 252 && out.length < length) out += RANDOM_ALPHABET[byte % 36];
    }
  }
  return out;
}

/** Lower-cases `text` and keeps only what a DNS-1123 label allows, without edge dashes. */
export function dnsLabelPart(text: string): string {
  return text.toLowerCase().replace(/[^a-z0-9-]+/g, "-").replace(/-+/g, "-").replace(
    /^-+|-+$/g,
    "",
  );
}

/** Whether `value` is a valid label value (at most 63 characters, alphanumeric at both ends). */
export function isLabelValue(value: string): boolean {
  return value.length <= 63 && /^(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?$/.test(value);
}

/** The parts of a build's name. */
export interface NameParts {
  /** Such as `slugbuild` or `dockerbuild`. */
  prefix: string;
  /** The application's name, when known. */
  app?: string;
  /** The commit being built; its first 8 characters are used. */
  sha?: string;
  /** Longest name allowed. */
  maxLength: number;
}

/**
 * A fresh build name, `<prefix>-<app>-<sha8>-<rand8>` as the old builder made
 * them, shortened in the app part (then the prefix) to fit `maxLength`.
 */
export function buildName(parts: NameParts): string {
  const random = randomSuffix(8);
  const sha = dnsLabelPart(parts.sha ?? "").slice(0, 8);
  let prefix = dnsLabelPart(parts.prefix);
  let app = dnsLabelPart(parts.app ?? "");
  const join = (): string => [prefix, app, sha, random].filter((part) => part !== "").join("-");
  if (join().length > parts.maxLength) {
    const excess = join().length - parts.maxLength;
    app = app.slice(0, Math.max(0, app.length - excess)).replace(/-+$/, "");
  }
  if (join().length > parts.maxLength) {
    const excess = join().length - parts.maxLength;
    prefix = prefix.slice(0, Math.max(0, prefix.length - excess)).replace(/-+$/, "");
  }
  return join();
}
