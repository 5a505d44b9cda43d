/**
 * The two sides as separate processes, the way a pod and a builder run them:
 * `phonehome receive` in one process, `phonehome relay` in another.
 */

import assert from "node:assert/strict";
import { PROTOCOL_VERSION, STREAM_PATH } from "../src/protocol/mod.ts";
import { unlessUnavailable } from "./support/requirements.ts";
import {
  DENO,
  freePort,
  LineWatcher,
  readAll,
  readText,
  spawnPhonehome,
  tempDir,
  waitForFile,
} from "./support/processes.ts";

const TOKEN = "test-secret-0123456789";

interface RunningReceiver {
  child: Deno.ChildProcess;
  url: string;
  stdout: LineWatcher;
  stderr: LineWatcher;
}

async function startReceiver(dir: string, flags: string[] = []): Promise<RunningReceiver> {
  const urlFile = `${dir}/url`;
  const child = spawnPhonehome([
    "receive",
    "--listen=127.0.0.1:0",
    `--url-file=${urlFile}`,
    "--idle-interval=0",
    ...flags,
  ], { env: { PHONEHOME_TOKEN: TOKEN } });
  const stdout = new LineWatcher(child.stdout);
  const stderr = new LineWatcher(child.stderr);
  const url = (await waitForFile(urlFile)).trim();
  return { child, url, stdout, stderr };
}

function startRelay(
  url: string,
  command: string[],
  flags: string[] = [],
  token = TOKEN,
): Deno.ChildProcess {
  return spawnPhonehome(["relay", ...flags, "--", ...command], {
    env: { PHONEHOME_URL: url, PHONEHOME_TOKEN: token },
  });
}

Deno.test("receive writes the URL once listening and exits with the relay's build status", async () => {
  await using dir = await tempDir();
  const receiver = await startReceiver(dir.path);
  assert.match(receiver.url, new RegExp(`^ws://127\\.0\\.0\\.1:\\d+${STREAM_PATH}$`));
  const relay = startRelay(receiver.url, ["sh", "-c", "echo out; echo err >&2; exit 5"]);
  const [relayOut, relayErr, relayStatus] = await Promise.all([
    readText(relay.stdout),
    readText(relay.stderr),
    relay.status,
  ]);
  const status = await receiver.child.status;
  assert.equal(status.code, 5);
  assert.equal(await receiver.stdout.done, "out\n");
  assert.equal(await receiver.stderr.done, "err\n");
  assert.equal(relayStatus.code, 5);
  // The relay copies the output to its own streams, for the pod log.
  assert.equal(relayOut, "out\n");
  assert.equal(relayErr, "err\n");
});

Deno.test("a wrong secret gets 401, is logged without the secret, and the real stream still completes", async () => {
  await using dir = await tempDir();
  const receiver = await startReceiver(dir.path);
  const httpUrl = receiver.url.replace(/^ws:/, "http:");
  const response = await fetch(httpUrl, {
    headers: {
      authorization: "Bearer wrong-secret-value",
      upgrade: "websocket",
      connection: "Upgrade",
      "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
      "sec-websocket-version": "13",
    },
  });
  assert.equal(response.status, 401);
  await response.body?.cancel();
  const refusal = await receiver.stderr.waitFor(/Refused a connection/);
  assert.match(refusal, /Missing or wrong secret/);
  assert.doesNotMatch(refusal, /wrong-secret-value|test-secret/);

  const relay = startRelay(receiver.url, ["sh", "-c", "echo still fine"]);
  assert.equal((await relay.status).code, 0);
  assert.equal((await receiver.child.status).code, 0);
  assert.equal(await receiver.stdout.done, "still fine\n");
});

Deno.test("a relay with the wrong secret gives up at once, and the build still runs to completion", async () => {
  await using dir = await tempDir();
  const receiver = await startReceiver(dir.path, ["--connect-timeout=60000"]);
  const relay = startRelay(
    receiver.url,
    ["sh", "-c", "echo built; exit 4"],
    [],
    "not-the-secret-either-0123",
  );
  const [out, err, status] = await Promise.all([
    readText(relay.stdout),
    readText(relay.stderr),
    relay.status,
  ]);
  assert.equal(status.code, 4);
  assert.equal(out, "built\n");
  assert.match(err, /refused the secret \(HTTP 401\)/);
  receiver.child.kill("SIGTERM");
  await receiver.child.status;
  await receiver.stdout.done;
  await receiver.stderr.done;
});

Deno.test("a relay started before the receiver listens connects once it does", async () => {
  const port = freePort();
  const url = `ws://127.0.0.1:${port}${STREAM_PATH}`;
  const relay = startRelay(url, ["sh", "-c", "echo early bird; exit 0"]);
  const relayErr = new LineWatcher(relay.stderr);
  const relayOut = readText(relay.stdout);
  // Start the receiver only after the relay has tried and failed once.
  await relayErr.waitFor(/Cannot reach the receiver yet/);
  const receiver = spawnPhonehome(
    ["receive", `--listen=127.0.0.1:${port}`, "--idle-interval=0"],
    { env: { PHONEHOME_TOKEN: TOKEN } },
  );
  const [stdout, stderr, status] = await Promise.all([
    readText(receiver.stdout),
    readText(receiver.stderr),
    receiver.status,
  ]);
  assert.equal(status.code, 0, stderr);
  assert.equal(stdout, "early bird\n");
  assert.equal((await relay.status).code, 0);
  await relayOut;
  await relayErr.done;
});

Deno.test("the receiver gives up with status 69 when no relay comes", async () => {
  const receiver = spawnPhonehome(
    ["receive", "--listen=127.0.0.1:0", "--connect-timeout=300", "--idle-interval=0"],
    { env: { PHONEHOME_TOKEN: TOKEN } },
  );
  const [stdout, stderr, status] = await Promise.all([
    readText(receiver.stdout),
    readText(receiver.stderr),
    receiver.status,
  ]);
  assert.equal(status.code, 69);
  assert.equal(stdout, "");
  assert.match(
    stderr,
    /^phonehome: No relay phoned home within 300ms; check that the build started/,
  );
  assert.equal(stderr.trim().split("\n").length, 1, "one line");
});

Deno.test("BUILDER_POD_WAIT_DURATION sets the receiver's connect timeout", async () => {
  const receiver = spawnPhonehome(
    ["receive", "--listen=127.0.0.1:0", "--idle-interval=0"],
    { env: { PHONEHOME_TOKEN: TOKEN, BUILDER_POD_WAIT_DURATION: "250" } },
  );
  const [stderr, status] = await Promise.all([readText(receiver.stderr), receiver.status]);
  await receiver.stdout.cancel();
  assert.equal(status.code, 69);
  assert.match(stderr, /within 250ms/);
});

Deno.test("while waiting, the receiver prints '...' every idle interval on stderr", async () => {
  const receiver = spawnPhonehome(
    ["receive", "--listen=127.0.0.1:0", "--idle-interval=100", "--connect-timeout=2000"],
    { env: { PHONEHOME_TOKEN: TOKEN } },
  );
  const stderr = new LineWatcher(receiver.stderr);
  await stderr.waitFor(/^\.\.\.$/);
  receiver.kill("SIGTERM");
  const status = await receiver.status;
  await receiver.stdout.cancel();
  await stderr.done;
  assert.equal(status.code, 143);
  assert.ok(stderr.lines.filter((line) => line === "...").length >= 1);
});

Deno.test("a relay that can never connect still runs the build to completion and exits with its status", async () => {
  const url = `ws://127.0.0.1:${freePort()}${STREAM_PATH}`;
  const size = 10 * 1024 * 1024;
  // Far more output than the window: the build blocks until the relay gives up, then finishes.
  const relay = startRelay(
    url,
    ["sh", "-c", `head -c ${size} /dev/zero; echo done >&2; exit 3`],
    ["--connect-timeout=500", "--window=65536"],
  );
  const [stdout, stderr, status] = await Promise.all([
    readAll(relay.stdout),
    readText(relay.stderr),
    relay.status,
  ]);
  assert.equal(status.code, 3);
  assert.equal(stdout.byteLength, size);
  assert.match(stderr, /^done$/m);
  assert.match(
    stderr,
    /Could not phone home to ws:\/\/127\.0\.0\.1:\d+\/phonehome\/stream: No connection within 500ms/,
  );
  assert.match(stderr, /The build's output is in this pod's log only\./);
});

Deno.test("SIGTERM to the relay reaches the build's grandchildren, and the signal is reported", async () => {
  await using dir = await tempDir();
  const receiver = await startReceiver(dir.path);
  const stdout = receiver.stdout;
  const relay = startRelay(receiver.url, [
    "sh",
    "-c",
    `sh -c 'trap "echo grandchild got TERM; exit 0" TERM; echo ready; while :; do sleep 0.05; done' & wait`,
  ]);
  await stdout.waitFor(/^ready$/);
  relay.kill("SIGTERM");
  const [relayStatus, status] = await Promise.all([relay.status, receiver.child.status]);
  await relay.stdout.cancel();
  await relay.stderr.cancel();
  assert.equal(await stdout.waitFor(/grandchild/), "grandchild got TERM");
  assert.equal(relayStatus.code, 143);
  assert.equal(status.code, 143);
  await stdout.done;
  await receiver.stderr.done;
});

Deno.test("a relay that dies mid-build makes the receiver fail with 75 and say how many bytes arrived", async () => {
  await using dir = await tempDir();
  const receiver = await startReceiver(dir.path, ["--reconnect-grace=300"]);
  const stdout = receiver.stdout;
  const pidFile = `${dir.path}/build.pid`;
  const relay = startRelay(receiver.url, [
    "sh",
    "-c",
    `echo $$ > ${pidFile}; echo partial; exec sleep 600`,
  ]);
  await stdout.waitFor(/^partial$/);
  relay.kill("SIGKILL");
  await relay.status;
  await relay.stdout.cancel();
  await relay.stderr.cancel();
  const status = await receiver.child.status;
  await stdout.done;
  const stderr = await receiver.stderr.done;
  assert.equal(status.code, 75);
  assert.match(stderr, /Lost the connection to the relay/);
  assert.match(
    stderr,
    /did not return within 300ms; 8 bytes of stdout and 0 bytes of stderr arrived/,
  );
  // The orphaned build would otherwise linger: stop it the way a pod's deletion would.
  Deno.kill(Number(await Deno.readTextFile(pidFile)), "SIGKILL");
});

/** The last commit whose relay speaks protocol version 1. */
const PROTOCOL_V1_COMMIT = "4bf1410a294478c525e7587a7783d4648acb5736";

/** Why the previous release's relay cannot be run from this checkout, if it cannot. */
function previousReleaseMissing(): string | undefined {
  try {
    const found = new Deno.Command("git", {
      args: [
        "-C",
        new URL(".", import.meta.url).pathname,
        "cat-file",
        "-e",
        `${PROTOCOL_V1_COMMIT}^{commit}`,
      ],
      stdout: "null",
      stderr: "null",
    }).outputSync();
    return found.success
      ? undefined
      : `commit ${PROTOCOL_V1_COMMIT.slice(0, 7)} of protocol v1 is not in this clone`;
  } catch {
    return "git is not installed";
  }
}

Deno.test(unlessUnavailable(previousReleaseMissing(), {
  name:
    "the previous release's relay, speaking protocol v1, is refused with the documented mismatch",
  async fn(): Promise<void> {
    await using dir = await tempDir();
    const old = `${dir.path}/v1`;
    await Deno.mkdir(old);
    const archive = `${dir.path}/v1.tar`;
    const root = new URL("..", import.meta.url).pathname;
    for (
      const args of [
        ["git", "-C", root, "archive", "-o", archive, PROTOCOL_V1_COMMIT],
        ["tar", "-xf", archive, "-C", old],
      ]
    ) {
      const result = await new Deno.Command(args[0], { args: args.slice(1) }).output();
      assert.ok(result.success, new TextDecoder().decode(result.stderr));
    }
    const receiver = await startReceiver(dir.path);
    const relay = new Deno.Command(DENO, {
      args: [
        "run",
        "-A",
        "--quiet",
        `--config=${old}/deno.json`,
        `${old}/main.ts`,
        "relay",
        "--connect-timeout=5000",
        "--",
        "sh",
        "-c",
        "echo from v1",
      ],
      env: { PHONEHOME_URL: receiver.url, PHONEHOME_TOKEN: TOKEN },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const mismatch =
      "Protocol version mismatch: the relay speaks v1, the receiver speaks v2; use the same phonehome release on both sides.";
    assert.match(await receiver.stderr.waitFor(/mismatch/), new RegExp(RegExp.escape(mismatch)));
    const [status, relayOut, relayErr] = await Promise.all([
      relay.status,
      readText(relay.stdout),
      readText(relay.stderr),
    ]);
    // The old relay still runs its build to the end, as it does whenever the receiver cannot be used.
    assert.equal(status.code, 0, relayErr);
    assert.equal(relayOut, "from v1\n");
    assert.match(relayErr, new RegExp(RegExp.escape(mismatch.slice(0, -1))));
    receiver.child.kill("SIGTERM");
    await receiver.child.status;
    await receiver.stdout.done;
  },
}));

Deno.test("a relay speaking another protocol version is refused with both versions named", async () => {
  await using dir = await tempDir();
  const receiver = await startReceiver(dir.path);
  const socket = new WebSocket(receiver.url, { headers: { authorization: `Bearer ${TOKEN}` } });
  const closed = new Promise<CloseEvent>((resolve) => (socket.onclose = resolve));
  socket.onopen = () =>
    socket.send(
      JSON.stringify({ type: "hello", versions: [3], relay: "future", attempt: 1, window: 65536 }),
    );
  const close = await closed;
  assert.equal(close.code, 4001);
  assert.match(close.reason, /relay speaks v3, the receiver speaks v2/);
  assert.match(
    await receiver.stderr.waitFor(/mismatch/),
    /relay speaks v3, the receiver speaks v2/,
  );

  const relay = startRelay(receiver.url, ["sh", "-c", "echo current version"]);
  assert.equal((await relay.status).code, 0);
  await relay.stdout.cancel();
  await relay.stderr.cancel();
  assert.equal((await receiver.child.status).code, 0);
  assert.equal(await receiver.stdout.done, "current version\n");
});

Deno.test("a second relay is refused while the first one streams, and the first completes", async () => {
  await using dir = await tempDir();
  const fifo = `${dir.path}/release`;
  await new Deno.Command("mkfifo", { args: [fifo] }).output();
  const receiver = await startReceiver(dir.path);
  const relay = startRelay(receiver.url, [
    "sh",
    "-c",
    `echo first; read line < ${fifo}; echo "$line"`,
  ]);
  await receiver.stdout.waitFor(/^first$/);

  const intruder = new WebSocket(receiver.url, { headers: { authorization: `Bearer ${TOKEN}` } });
  const closed = new Promise<CloseEvent>((resolve) => (intruder.onclose = resolve));
  intruder.onopen = () =>
    intruder.send(
      JSON.stringify({
        type: "hello",
        versions: [PROTOCOL_VERSION],
        relay: "intruder",
        attempt: 1,
        window: 65536,
      }),
    );
  const close = await closed;
  assert.equal(close.code, 4003);
  assert.match(close.reason, /Another relay already owns this build's stream/);

  await Deno.writeTextFile(fifo, "second\n");
  assert.equal((await relay.status).code, 0);
  await relay.stdout.cancel();
  await relay.stderr.cancel();
  assert.equal((await receiver.child.status).code, 0);
  assert.equal(await receiver.stdout.done, "first\nsecond\n");
  assert.match(
    await receiver.stderr.done,
    /Closed a connection from 127\.0\.0\.1:\d+: Another relay/,
  );
});

Deno.test("a relay told to stop while the receiver is unreachable stops retrying within its kill grace", async () => {
  const url = `ws://127.0.0.1:${freePort()}${STREAM_PATH}`;
  const relay = startRelay(url, ["sh", "-c", "echo running; exec sleep 600"], [
    "--connect-timeout=600000",
    "--kill-grace=300",
  ]);
  const stderr = new LineWatcher(relay.stderr);
  const stdout = new LineWatcher(relay.stdout);
  await stdout.waitFor(/^running$/);
  await stderr.waitFor(/Cannot reach the receiver yet/);
  relay.kill("SIGTERM");
  const status = await relay.status;
  await stdout.done;
  assert.equal(status.code, 143);
  assert.match(await stderr.done, /told to stop before the receiver could be reached/);
});

Deno.test("with the local backend each message reaches the user once, not from both sides", async () => {
  const child = spawnPhonehome(["build", "--idle-interval=0", "--", "no-such-command-xyz"]);
  const [stdout, stderr, status] = await Promise.all([
    readText(child.stdout),
    readText(child.stderr),
    child.status,
  ]);
  assert.equal(status.code, 127, stderr);
  assert.equal(stdout, "");
  assert.equal(stderr.match(/Cannot start the build command/g)?.length, 1, stderr);
  assert.doesNotMatch(stderr, /phonehome relay:/);
});
