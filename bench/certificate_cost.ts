/**
 * What the per-build certificates of `phonehome build --tls` cost: times
 * `makeBuildCertificates` twice in this process and prints both on stdout as
 * JSON. The start-up case runs it in a fresh process per sample, because the
 * first call in a process (Web Crypto's first key generation and signing, V8
 * compiling the DER code) is the one a build pays; the second shows the
 * steady cost of the work itself.
 *
 * @module
 */

import { makeBuildCertificates } from "../src/receiver/tls/build_certificates.ts";
import { DEFAULT_CERTIFICATE_VALIDITY_MS } from "../src/cli/tls_flags.ts";

/** The address a local build's relay dials, which the leaf certificate names. */
const LOCAL_HOST = "127.0.0.1";

/** The two timings of one process, in milliseconds. */
export interface CertificateCost {
  /** The first call in the process: what a build pays. */
  firstMs: number;
  /** A second call right after it. */
  secondMs: number;
}

/** Milliseconds one call of `makeBuildCertificates` takes, as `phonehome build` makes it. */
async function timeOneCall(): Promise<number> {
  const startedAt = performance.now();
  await makeBuildCertificates({ host: LOCAL_HOST, validForMs: DEFAULT_CERTIFICATE_VALIDITY_MS });
  return performance.now() - startedAt;
}

/** Times a first and a second call in this process. */
export async function measureCertificateCost(): Promise<CertificateCost> {
  const firstMs = await timeOneCall();
  const secondMs = await timeOneCall();
  return { firstMs, secondMs };
}

if (import.meta.main) {
  console.log(JSON.stringify(await measureCertificateCost()));
}
