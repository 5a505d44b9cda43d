/**
 * The certificates of one build: an ephemeral CA and a leaf for the address
 * the relay dials, both ECDSA P-256, made with Web Crypto. The CA's private
 * key signs the leaf and is then dropped, so nobody, phonehome included, can
 * make another certificate the relay would trust. rustls refuses a
 * self-signed certificate that is its own CA (`CaUsedAsEndEntity`), hence two.
 *
 * @module
 */

import {
  bitString,
  boolean,
  type Der,
  ecdsaSignature,
  explicit,
  implicit,
  namedBits,
  objectIdentifier,
  octetString,
  pem,
  sequence,
  set,
  smallInteger,
  time,
  unsignedInteger,
  utf8String,
} from "./der.ts";
import { ipv4Bytes, ipv6Bytes } from "./ip_address.ts";

/** How far back a certificate's validity starts, for clocks behind the builder's. */
export const CLOCK_SKEW_MS = 10 * 60 * 1000;

/** The PEM texts a build needs: what the receiver serves, and what its relay trusts. */
export interface BuildCertificates {
  /** The CA's certificate: the one thing the relay trusts. */
  caPem: string;
  /** The receiver's certificate, for the address in the URL. */
  certPem: string;
  /** The receiver's private key (PKCS #8). */
  keyPem: string;
}

const OID = {
  ecdsaWithSha256: "1.2.840.10045.4.3.2",
  commonName: "2.5.4.3",
  basicConstraints: "2.5.29.19",
  keyUsage: "2.5.29.15",
  extendedKeyUsage: "2.5.29.37",
  subjectAltName: "2.5.29.17",
  serverAuth: "1.3.6.1.5.5.7.3.1",
} as const;

/** KeyUsage bit numbers (RFC 5280 4.2.1.3). */
const KeyUsage = { digitalSignature: 0, keyCertSign: 5, cRLSign: 6 } as const;

const ECDSA_P256 = { name: "ECDSA", namedCurve: "P-256" } as const;
const SIGN_SHA256 = { name: "ECDSA", hash: "SHA-256" } as const;

function name(commonName: string): Der {
  return sequence(set(sequence(objectIdentifier(OID.commonName), utf8String(commonName))));
}

function extension(oid: string, critical: boolean, value: Der): Der {
  return critical
    ? sequence(objectIdentifier(oid), boolean(true), octetString(value))
    : sequence(objectIdentifier(oid), octetString(value));
}

/** The SubjectAltName entry for `host`: an IP address, or else a DNS name. */
function altName(host: string): Der {
  const bare = host.startsWith("[") ? host.slice(1, -1) : host;
  const ip = ipv4Bytes(bare) ?? ipv6Bytes(bare);
  return ip !== undefined ? implicit(7, ip) : implicit(2, new TextEncoder().encode(bare));
}

async function signed(tbs: Der, signer: CryptoKey): Promise<Der> {
  const signature = new Uint8Array(await crypto.subtle.sign(SIGN_SHA256, signer, tbs));
  return sequence(
    tbs,
    sequence(objectIdentifier(OID.ecdsaWithSha256)),
    bitString(ecdsaSignature(signature)),
  );
}

function serialNumber(): Der {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[0] &= 0x7f; // positive, as RFC 5280 requires
  bytes[0] |= 0x01; // and never trimmed to fewer bytes
  return unsignedInteger(bytes);
}

/**
 * Makes a CA and a leaf for `host` (an IP address or a DNS name), valid from
 * {@linkcode CLOCK_SKEW_MS} ago for `validForMs`.
 */
export async function makeBuildCertificates(
  { host, validForMs }: { host: string; validForMs: number },
): Promise<BuildCertificates> {
  const now = Date.now();
  const validity = sequence(time(new Date(now - CLOCK_SKEW_MS)), time(new Date(now + validForMs)));
  const algorithm = sequence(objectIdentifier(OID.ecdsaWithSha256));
  const [ca, leaf] = await Promise.all([
    crypto.subtle.generateKey(ECDSA_P256, false, ["sign"]),
    crypto.subtle.generateKey(ECDSA_P256, true, ["sign"]),
  ]);
  const [caSpki, leafSpki, leafPkcs8] = await Promise.all([
    crypto.subtle.exportKey("spki", ca.publicKey),
    crypto.subtle.exportKey("spki", leaf.publicKey),
    crypto.subtle.exportKey("pkcs8", leaf.privateKey),
  ]);
  const caName = name(`phonehome build CA ${crypto.randomUUID()}`);
  // TBSCertificate (RFC 5280 4.1): both are v3, issued by the CA, for the same validity.
  const tbs = (subject: Der, spki: ArrayBuffer, extensions: Der[]): Der =>
    sequence(
      explicit(0, smallInteger(2)),
      serialNumber(),
      algorithm,
      caName,
      validity,
      subject,
      new Uint8Array(spki),
      explicit(3, sequence(...extensions)),
    );
  const caTbs = tbs(caName, caSpki, [
    extension(OID.basicConstraints, true, sequence(boolean(true), smallInteger(0))),
    extension(OID.keyUsage, true, namedBits([KeyUsage.keyCertSign, KeyUsage.cRLSign])),
  ]);
  const leafTbs = tbs(name("phonehome receiver"), leafSpki, [
    extension(OID.basicConstraints, true, sequence()),
    extension(OID.keyUsage, true, namedBits([KeyUsage.digitalSignature])),
    extension(OID.extendedKeyUsage, false, sequence(objectIdentifier(OID.serverAuth))),
    extension(OID.subjectAltName, false, sequence(altName(host))),
  ]);
  const [caCert, leafCert] = await Promise.all([
    signed(caTbs, ca.privateKey),
    signed(leafTbs, ca.privateKey),
  ]);
  return {
    caPem: pem("CERTIFICATE", caCert),
    certPem: pem("CERTIFICATE", leafCert),
    keyPem: pem("PRIVATE KEY", new Uint8Array(leafPkcs8)),
  };
}
