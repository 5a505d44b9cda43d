/**
 * Test support: a real OpenSSH sshd on a loopback port, with host and user keys
 * made for the run in a temporary directory, so that tests can `git push` over
 * ssh:// exactly as a developer does.
 *
 * @module
 */

import { freePort, LineWatcher } from "./processes.ts";
import { findProgram, unavailable } from "./requirements.ts";

/** How many loopback ports to try when another process takes the one picked. */
const PORT_ATTEMPTS = 5;

/** How long sshd may take to say it listens before it is given up on. */
const START_TIMEOUT_MS = 15_000;

/**
 * Why an sshd cannot be started here, or undefined when it can: it needs root
 * (to log in as root without PAM, as CI does), openssh-server and -client, and
 * git for what is pushed through it.
 */
export function sshdUnavailable(): string | undefined {
  return unavailable({
    root: "to log in over ssh as root",
    programs: ["sshd", "ssh", "ssh-keygen", "git"],
  });
}

/** A running sshd; dispose of it to stop it. */
export interface SshServer extends AsyncDisposable {
  /** The loopback port it listens on. */
  readonly port: number;
  /** The process id of the listening sshd. */
  readonly pid: number;
  /** A `GIT_SSH_COMMAND` that logs in with the run's key and checks the run's host key. */
  readonly sshCommand: string;
  /** The `ssh://` URL of a repository at an absolute `path`. */
  url(path: string): string;
  /** Everything sshd logged so far, for failure messages. */
  log(): string;
}

async function keygen(path: string): Promise<void> {
  const { code, stderr } = await new Deno.Command("ssh-keygen", {
    args: ["-q", "-t", "ed25519", "-N", "", "-C", "phonehome-test", "-f", path],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).output();
  if (code !== 0) throw new Error(`ssh-keygen failed: ${new TextDecoder().decode(stderr)}`);
}

function quote(word: string): string {
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

/** Starts sshd on a free loopback port, with its keys and configuration in `dir`. */
export async function startSshd(dir: string): Promise<SshServer> {
  // sshd refuses to start by a relative path, so it is started by the absolute one found.
  const sshd = findProgram("sshd");
  if (sshd === undefined) throw new Error("sshd is not installed");
  // sshd refuses to start without its privilege-separation directory.
  await Deno.mkdir("/run/sshd", { recursive: true, mode: 0o755 });
  const hostKey = `${dir}/host_key`;
  const userKey = `${dir}/user_key`;
  await Promise.all([keygen(hostKey), keygen(userKey)]);
  await Deno.copyFile(`${userKey}.pub`, `${dir}/authorized_keys`);
  const hostPublic = (await Deno.readTextFile(`${hostKey}.pub`)).split(" ").slice(0, 2).join(" ");

  let failures = "";
  for (let attempt = 0; attempt < PORT_ATTEMPTS; attempt++) {
    const port = freePort();
    const config = `${dir}/sshd_config`;
    await Deno.writeTextFile(
      config,
      [
        `Port ${port}`,
        "ListenAddress 127.0.0.1",
        `HostKey ${hostKey}`,
        "PidFile none",
        `AuthorizedKeysFile ${dir}/authorized_keys`,
        // The key files live in a temporary directory that StrictModes would reject.
        "StrictModes no",
        "PermitRootLogin yes",
        "AllowUsers root",
        "UsePAM no",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "X11Forwarding no",
        "PrintMotd no",
        "UseDNS no",
        "LogLevel INFO",
        "",
      ].join("\n"),
    );
    const child = new Deno.Command(sshd, {
      args: ["-D", "-e", "-f", config],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const log = new LineWatcher(child.stderr);
    // Killing a silent sshd ends its stderr, which ends the wait below.
    const deadline = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch {
        // Exited meanwhile.
      }
    }, START_TIMEOUT_MS);
    const ready = await log.waitFor(/^Server listening on |Bind to port|Cannot bind|fatal/);
    clearTimeout(deadline);
    if (!ready.startsWith("Server listening on ")) {
      try {
        child.kill("SIGTERM");
      } catch {
        // Already exited.
      }
      await child.status;
      failures += (await log.done) + "\n";
      continue;
    }
    const knownHosts = `${dir}/known_hosts`;
    await Deno.writeTextFile(knownHosts, `[127.0.0.1]:${port} ${hostPublic}\n`);
    const sshCommand = [
      "ssh",
      "-F",
      "/dev/null",
      "-i",
      quote(userKey),
      "-o",
      "IdentitiesOnly=yes",
      "-o",
      "BatchMode=yes",
      "-o",
      "StrictHostKeyChecking=yes",
      "-o",
      `UserKnownHostsFile=${quote(knownHosts)}`,
      "-o",
      "LogLevel=ERROR",
    ].join(" ");
    return {
      port,
      pid: child.pid,
      sshCommand,
      url: (path) => `ssh://root@127.0.0.1:${port}${path}`,
      log: () => log.lines.join("\n"),
      async [Symbol.asyncDispose](): Promise<void> {
        try {
          child.kill("SIGTERM");
        } catch {
          // Already exited.
        }
        await child.status;
        await log.done;
      },
    };
  }
  throw new Error(`sshd did not start on any of ${PORT_ATTEMPTS} ports:\n${failures}`);
}
