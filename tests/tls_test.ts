/**
 * wss: the per-build certificates, what crosses the network (a capture), a man
 * in the middle, the operator's own certificates, and the refusals that keep
 * the secret off an unencrypted or unverified connection.
 */

import assert from "node:assert/strict";
import { makeBuildCertificates } from "../src/receiver/tls/build_certificates.ts";
import { missing, unlessUnavailable } from "./support/requirements.ts";
import { collect, spawnPhonehome, tempDir, waitForFile } from "./support/processes.ts";
import { TapProxy } from "./support/tap_proxy.ts";
import { FrameSplitter } from "./support/fault_proxy.ts";

const TOKEN = "tls-test-secret-0123456789";
const HOUR_MS = 60 * 60 * 1000;

/** Completes a TLS handshake with `port` on 127.0.0.1 as `hostname`, trusting `caPem`. */
async function handshake(
  { port, hostname, caPem }: { port: number; hostname: string; caPem: string },
): Promise<void> {
  const conn = await Deno.connectTls({ hostname, port, caCerts: [caPem] });
  try {
    await conn.handshake();
  } finally {
    conn.close();
  }
}

/** A TLS listener on 127.0.0.1 that completes handshakes and nothing more. */
function tlsServer(certPem: string, keyPem: string): Deno.TlsListener & { port: number } {
  const listener = Deno.listenTls({ hostname: "127.0.0.1", port: 0, cert: certPem, key: keyPem });
  (async () => {
    for await (const conn of listener) conn.handshake().catch(() => {}).finally(() => conn.close());
  })().catch(() => {});
  return Object.assign(listener, { port: (listener.addr as Deno.NetAddr).port });
}

Deno.test("a per-build certificate is trusted with its own CA only, and only for its address", async () => {
  const build = await makeBuildCertificates({ host: "127.0.0.1", validForMs: HOUR_MS });
  const other = await makeBuildCertificates({ host: "127.0.0.1", validForMs: HOUR_MS });
  const elsewhere = await makeBuildCertificates({ host: "127.0.0.2", validForMs: HOUR_MS });
  const byName = await makeBuildCertificates({ host: "localhost", validForMs: HOUR_MS });
  using server = tlsServer(build.certPem, build.keyPem);
  await handshake({ port: server.port, hostname: "127.0.0.1", caPem: build.caPem });
  await assert.rejects(
    handshake({ port: server.port, hostname: "127.0.0.1", caPem: other.caPem }),
    /UnknownIssuer/,
  );
  using wrongAddress = tlsServer(elsewhere.certPem, elsewhere.keyPem);
  await assert.rejects(
    handshake({ port: wrongAddress.port, hostname: "127.0.0.1", caPem: elsewhere.caPem }),
    /not valid for name "127\.0\.0\.1"/,
  );
  using named = tlsServer(byName.certPem, byName.keyPem);
  await handshake({ port: named.port, hostname: "localhost", caPem: byName.caPem });
});

Deno.test(unlessUnavailable(missing(["openssl"]), {
  name: "openssl reads a per-build certificate as a CA and a server certificate for its IP",
  async fn(): Promise<void> {
    await using dir = await tempDir();
    const made = await makeBuildCertificates({ host: "10.1.2.3", validForMs: HOUR_MS });
    await Deno.writeTextFile(`${dir.path}/ca.pem`, made.caPem);
    await Deno.writeTextFile(`${dir.path}/leaf.pem`, made.certPem);
    const run = async (...args: string[]): Promise<string> => {
      const out = await new Deno.Command("openssl", { args }).output();
      const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
      assert.ok(out.success, text);
      return text;
    };
    await run(
      "verify",
      "-purpose",
      "sslserver",
      "-CAfile",
      `${dir.path}/ca.pem`,
      `${dir.path}/leaf.pem`,
    );
    assert.match(
      await run("x509", "-in", `${dir.path}/leaf.pem`, "-noout", "-ext", "subjectAltName"),
      /IP Address:10\.1\.2\.3/,
    );
    assert.match(
      await run("x509", "-in", `${dir.path}/ca.pem`, "-noout", "-ext", "basicConstraints"),
      /CA:TRUE, pathlen:0/,
    );
  },
}));

/** A running `phonehome receive`, the URL it wrote, and its port. */
interface Receiving {
  receiver: Deno.ChildProcess;
  url: URL;
  port: number;
}

/** `phonehome receive` and the files it writes; `flags` such as `--tls`. */
async function receive(dir: string, flags: string[]): Promise<Receiving> {
  const receiver = spawnPhonehome([
    "receive",
    "--listen=127.0.0.1:0",
    `--url-file=${dir}/url`,
    "--idle-interval=0",
    ...flags,
  ], { env: { PHONEHOME_TOKEN: TOKEN } });
  const url = new URL((await waitForFile(`${dir}/url`)).trim());
  return { receiver, url, port: Number(url.port) };
}

/** A relay dialing `port` on 127.0.0.1 with the scheme of `url`, running `script`. */
function relayVia(
  { url, port, caFile, script, flags = [] }: {
    url: URL;
    port: number;
    caFile?: string;
    script: string;
    flags?: string[];
  },
): Deno.ChildProcess {
  const via = `${url.protocol}//127.0.0.1:${port}${url.pathname}`;
  return spawnPhonehome(["relay", "--no-tee", ...flags, "--", "sh", "-c", script], {
    env: {
      PHONEHOME_URL: via,
      PHONEHOME_TOKEN: TOKEN,
      ...(caFile === undefined ? {} : { PHONEHOME_TLS_CA: caFile }),
    },
  });
}

Deno.test("a capture of the connection holds the build's lines and the secret over ws, neither over wss", async (t) => {
  const marker = `confidential-build-line-${crypto.randomUUID()}`;
  for (const tls of [false, true]) {
    await t.step(tls ? "wss: nothing readable" : "ws: everything readable", async () => {
      await using dir = await tempDir();
      const { receiver, url, port } = await receive(
        dir.path,
        tls ? ["--tls", `--ca-file=${dir.path}/ca.pem`] : [],
      );
      assert.equal(url.protocol, tls ? "wss:" : "ws:");
      await using tap = new TapProxy({ target: { hostname: "127.0.0.1", port } });
      const relay = relayVia({
        url,
        port: tap.port,
        caFile: tls ? `${dir.path}/ca.pem` : undefined,
        script: `for i in 1 2 3; do echo "${marker} $i"; done`,
      });
      const [relayResult, received] = await Promise.all([collect(relay), collect(receiver)]);
      assert.equal(relayResult.code, 0, relayResult.stderr);
      assert.equal(received.code, 0, received.stderr);
      assert.equal(received.stdout, [1, 2, 3].map((i) => `${marker} ${i}\n`).join(""));
      assert.ok(tap.stats.connections >= 1);
      // The relay's frames are masked, as a client's must be; the capture is read unmasked.
      const frames = new FrameSplitter().push(tap.recorded("up"));
      const payloads = frames.map((unit) => new TextDecoder().decode(unit.message?.payload));
      assert.equal(payloads.join("").includes(marker), !tls, "the build's lines in the capture");
      assert.equal(tap.saw(marker), false, "the build's lines in the capture, still masked");
      assert.equal(tap.saw(TOKEN), !tls, "the secret in the capture");
    });
  }
});

Deno.test("a man in the middle with a certificate of its own gets no secret and no output", async () => {
  await using dir = await tempDir();
  const { receiver, url, port } = await receive(dir.path, [
    "--tls",
    `--ca-file=${dir.path}/ca.pem`,
    "--connect-timeout=60000",
  ]);
  const realCa = await Deno.readTextFile(`${dir.path}/ca.pem`);
  const impostor = await makeBuildCertificates({ host: "127.0.0.1", validForMs: HOUR_MS });
  await using mitm = new TapProxy({
    target: { hostname: "127.0.0.1", port },
    serve: { certPem: impostor.certPem, keyPem: impostor.keyPem },
    targetCaPem: realCa,
  });
  const marker = `mitm-marker-${crypto.randomUUID()}`;
  const relay = await collect(relayVia({
    url,
    port: mitm.port,
    caFile: `${dir.path}/ca.pem`,
    script: `echo ${marker}`,
    flags: ["--connect-timeout=2000"],
  }));
  receiver.kill("SIGTERM");
  const received = await collect(receiver);
  // The build still ran to its end, and said why its output stays in the pod log.
  assert.equal(relay.code, 0, relay.stderr);
  assert.match(
    relay.stderr,
    /the builder's certificate is not the one this build was given \(UnknownIssuer\); the secret was not sent/,
  );
  assert.match(relay.stderr, /Could not phone home/);
  assert.ok(mitm.stats.connections >= 1, "the relay did dial the man in the middle");
  assert.equal(mitm.recorded().byteLength, 0, "nothing decrypted");
  assert.doesNotMatch(received.stderr, /Relay connected/);
  assert.equal(received.stdout, "");
});

Deno.test("the relay refuses a ws:// URL when it was given a CA, before starting the build", async () => {
  await using dir = await tempDir();
  const made = await makeBuildCertificates({ host: "127.0.0.1", validForMs: HOUR_MS });
  const relay = await collect(spawnPhonehome(
    ["relay", "--", "sh", "-c", `touch ${dir.path}/started`],
    {
      env: {
        PHONEHOME_URL: "ws://127.0.0.1:9/phonehome/stream",
        PHONEHOME_TOKEN: TOKEN,
        PHONEHOME_TLS_CA: made.caPem,
      },
    },
  ));
  assert.equal(relay.code, 64);
  assert.match(
    relay.stderr,
    /PHONEHOME_URL \(from the environment\) is ws:\/\/, but the relay was given a CA .*: it does not send the secret unencrypted/,
  );
  await assert.rejects(Deno.stat(`${dir.path}/started`), Deno.errors.NotFound);
});

Deno.test("a wss receiver drops a client that never finishes its TLS handshake, and one that speaks plain HTTP", async () => {
  await using dir = await tempDir();
  const { receiver, port } = await receive(dir.path, ["--tls"]);
  const idle = await Deno.connect({ hostname: "127.0.0.1", port });
  const plain = await Deno.connect({ hostname: "127.0.0.1", port });
  await plain.write(new TextEncoder().encode("GET /phonehome/stream HTTP/1.1\r\nHost: x\r\n\r\n"));
  const endOf = async (conn: Deno.Conn): Promise<number | null> => {
    try {
      return await conn.read(new Uint8Array(1024));
    } catch {
      return null;
    } finally {
      conn.close();
    }
  };
  // Both end without an answer a plain client could read: the reads end, or fail.
  const [idleRead, plainRead] = await Promise.all([endOf(idle), endOf(plain)]);
  assert.ok(idleRead === null || idleRead > 0);
  assert.ok(plainRead === null || plainRead > 0);
  receiver.kill("SIGTERM");
  const received = await collect(receiver);
  assert.equal(received.code, 143);
  assert.match(received.stderr, /Refused a connection from 127\.0\.0\.1:\d+: /);
});

Deno.test(unlessUnavailable(missing(["openssl"]), {
  name: "an operator's certificate from openssl serves wss, trusted through PHONEHOME_TLS_CA",
  async fn(): Promise<void> {
    await using dir = await tempDir();
    const openssl = async (...args: string[]): Promise<void> => {
      const out = await new Deno.Command("openssl", { args, cwd: dir.path }).output();
      assert.ok(out.success, new TextDecoder().decode(out.stderr));
    };
    // An operator's PKI: a CA with an RSA key, a server certificate for 127.0.0.1 signed by it.
    await openssl(
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      "ca.key",
      "-out",
      "ca.pem",
      "-days",
      "1",
      "-subj",
      "/CN=operator CA",
      "-addext",
      "basicConstraints=critical,CA:TRUE",
      "-addext",
      "keyUsage=critical,keyCertSign",
    );
    await openssl(
      "req",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      "server.key",
      "-out",
      "server.csr",
      "-subj",
      "/CN=builder",
    );
    await Deno.writeTextFile(
      `${dir.path}/ext.cnf`,
      "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
    );
    await openssl(
      "x509",
      "-req",
      "-in",
      "server.csr",
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-out",
      "server.pem",
      "-days",
      "1",
      "-extfile",
      "ext.cnf",
    );
    const flags = [
      `--tls-cert=${dir.path}/server.pem`,
      `--tls-key=${dir.path}/server.key`,
      "--listen=127.0.0.1:0",
      "--idle-interval=0",
    ];
    const trusted = await collect(spawnPhonehome(
      ["build", ...flags, "--", "echo", "served by the operator's certificate"],
      { env: { PHONEHOME_TLS_CA: `${dir.path}/ca.pem` } },
    ));
    assert.equal(trusted.code, 0, trusted.stderr);
    assert.equal(trusted.stdout, "served by the operator's certificate\n");
    // Without the operator's CA the relay trusts nothing that vouches for this certificate.
    const untrusted = await collect(spawnPhonehome(
      ["build", ...flags, "--connect-timeout=3000", "--", "echo", "never delivered"],
    ));
    assert.equal(untrusted.code, 69, untrusted.stderr);
    assert.match(untrusted.stderr, /certificate is not the one this build was given/);
  },
}));
