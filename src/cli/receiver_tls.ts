/**
 * What the receiver serves, decided from the TLS flags: the operator's
 * certificate, one made for this build, or none. Builder side only.
 *
 * @module
 */

import { UsageError } from "../errors.ts";
import { makeBuildCertificates } from "../receiver/tls/build_certificates.ts";
import type { FlagTable, FlagValues, ParsedFlags } from "./flags.ts";
import { readPem, type ReceiverTls, tlsFlags } from "./tls_flags.ts";

/**
 * Decides the receiver's TLS from its flags: the operator's certificate when
 * given, else a per-build one when `--tls` (or `enabledByDefault`) says so,
 * made for `host` and valid for `validForMs`.
 */
export async function resolveTls<T extends FlagTable & typeof tlsFlags>(
  parsed: ParsedFlags<T>,
  { enabledByDefault, host, validForMs }: {
    enabledByDefault: boolean;
    host: string;
    validForMs: number;
  },
): Promise<ReceiverTls> {
  const flags = parsed as unknown as ParsedFlags<typeof tlsFlags>;
  const values: FlagValues<typeof tlsFlags> = flags.values;
  const certFile = values["tls-cert"];
  const keyFile = values["tls-key"];
  if ((certFile === undefined) !== (keyFile === undefined)) {
    const missing = certFile === undefined ? "--tls-cert" : "--tls-key";
    throw new UsageError(`${missing} is missing: a certificate and its key go together.`);
  }
  if (certFile !== undefined && keyFile !== undefined) {
    if (values.tls === false) {
      throw new UsageError(
        `${flags.source("tls")} turns TLS off, but ${flags.source("tls-cert")} gives a ` +
          "certificate; choose one.",
      );
    }
    const [certPem, keyPem] = await Promise.all([
      readPem({ value: certFile, source: flags.source("tls-cert"), label: /CERTIFICATE/ }),
      readPem({ value: keyFile, source: flags.source("tls-key"), label: /[A-Z ]*PRIVATE KEY/ }),
    ]);
    return { serve: { certPem, keyPem } };
  }
  if (!(values.tls ?? enabledByDefault)) return {};
  const made = await makeBuildCertificates({ host, validForMs });
  return { serve: { certPem: made.certPem, keyPem: made.keyPem }, caPem: made.caPem };
}
