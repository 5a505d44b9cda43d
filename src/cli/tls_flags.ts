/**
 * The TLS flags of the builder side, which choose between a per-build
 * certificate, the operator's own and none, and reading the PEM files they
 * name; the relay's `--tls-ca` reads its certificate here too. What the flags
 * decide is in receiver_tls.ts, so that the relay loads no certificate maker.
 *
 * @module
 */

import { errorMessage, UsageError } from "../errors.ts";
import { flag } from "./flags.ts";

/** How long a per-build certificate stays valid when the build has no deadline of its own. */
export const DEFAULT_CERTIFICATE_VALIDITY_MS = 7 * 24 * 60 * 60 * 1000;

/** The TLS flags of `build` and `receive`. */
export const tlsFlags = {
  tls: flag({
    kind: "boolean",
    env: ["PHONEHOME_TLS"],
    help: "Serve the relay wss:// with a certificate made for this build: an ephemeral CA, " +
      "whose private key is dropped at once, and a certificate from it for the advertised " +
      "address. The relay is given that CA to trust. On by itself with --backend " +
      "kubernetes; --no-tls turns it off where the network is encrypted already (a service " +
      "mesh); locally, and for receive, --tls turns it on.",
  }),
  "tls-cert": flag({
    kind: "string",
    env: ["PHONEHOME_TLS_CERT"],
    valueName: "FILE",
    help: "Serve wss:// with this certificate (PEM, with its chain) instead of a per-build " +
      "one, for example from cert-manager; needs --tls-key. The relay must trust its " +
      "issuer: its own --tls-ca, or the system's roots.",
  }),
  "tls-key": flag({
    kind: "string",
    env: ["PHONEHOME_TLS_KEY"],
    valueName: "FILE",
    help: "The private key (PEM) of --tls-cert.",
  }),
} as const;

/** What the receiver serves, and the CA its relay is to trust, if phonehome made one. */
export interface ReceiverTls {
  /** The certificate and key to serve; plain ws:// when undefined. */
  serve?: { certPem: string; keyPem: string };
  /** The per-build CA, for the relay; undefined with the operator's certificate or none. */
  caPem?: string;
}

/**
 * Reads a PEM file named by a flag, or takes PEM text given directly (a
 * variable set from a Kubernetes Secret holds the text itself). A usage
 * error names `source` when it cannot be read or holds no `label` block.
 */
export async function readPem(
  { value, source, label }: { value: string; source: string; label: RegExp },
): Promise<string> {
  let text = value;
  if (!value.trimStart().startsWith("-----BEGIN ")) {
    try {
      text = await Deno.readTextFile(value);
    } catch (error) {
      throw new UsageError(`Cannot read ${value} from ${source}: ${errorMessage(error)}.`);
    }
  }
  if (!new RegExp(`-----BEGIN ${label.source}-----`).test(text)) {
    throw new UsageError(`${source} holds no PEM ${label.source} block; check what it names.`);
  }
  return text;
}
