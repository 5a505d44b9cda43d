/**
 * What a container of the kubelet stand-in runs with: the image's ENTRYPOINT,
 * CMD and environment, the container's env resolved as the kubelet does
 * (values, Secrets, the downward API), and `$(VAR)` expansion in env values,
 * command and args.
 *
 * @module
 */

import type { KObject } from "./api_objects.ts";
import type { FakeApiServer } from "./fake_api_server.ts";

/** What an image holds, for the stand-in: its ENTRYPOINT, CMD and environment. */
export interface ImageSpec {
  entrypoint?: string[];
  cmd?: string[];
  env?: Record<string, string>;
}

/** The node every pod runs on. */
export const NODE_NAME = "fake-node-1";

/** The node's IP, as pods see it in `status.hostIP`. */
export const HOST_IP = "10.0.0.1";

type Json = Record<string, unknown>;

/** Expands `$(VAR)` the way Kubernetes does in env values, command and args; `$$` is a `$`. */
export function expandVariables(text: string, env: Record<string, string>): string {
  let out = "";
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c !== "$" || i + 1 >= text.length) {
      out += c;
      continue;
    }
    const next = text[i + 1];
    if (next === "$") {
      out += "$";
      i++;
    } else if (next === "(") {
      const close = text.indexOf(")", i + 2);
      const name = close === -1 ? "" : text.slice(i + 2, close);
      if (close !== -1 && name in env) {
        out += env[name];
        i = close;
      } else {
        out += c;
      }
    } else {
      out += c;
    }
  }
  return out;
}

/**
 * The command line a container runs: its `command` (or the image's
 * ENTRYPOINT) and its `args` (or, without a `command`, the image's CMD), with
 * `$(VAR)` expanded from `env`.
 */
export function containerArgv(
  container: Json,
  image: ImageSpec,
  env: Record<string, string>,
): string[] {
  const expand = (list: unknown): string[] =>
    ((list ?? []) as string[]).map((arg) => expandVariables(arg, env));
  const command = container.command === undefined
    ? (image.entrypoint ?? [])
    : expand(container.command);
  const args = container.args === undefined
    ? (container.command === undefined ? (image.cmd ?? []) : [])
    : expand(container.args);
  return [...command, ...args];
}

/** The container's environment, or why it cannot be made (a missing Secret or key). */
export function containerEnv(
  api: FakeApiServer,
  pod: KObject,
  container: Json,
  image: ImageSpec,
  podIP: string,
): Record<string, string> | string {
  const env: Record<string, string> = {
    PATH: Deno.env.get("PATH") ?? "/usr/local/bin:/usr/bin:/bin",
    HOME: Deno.env.get("HOME") ?? "/root",
    HOSTNAME: pod.metadata.name,
    NO_COLOR: "1",
    ...image.env,
  };
  const denoDir = Deno.env.get("DENO_DIR");
  if (denoDir !== undefined) env.DENO_DIR = denoDir;
  for (const variable of (container.env ?? []) as Json[]) {
    const name = String(variable.name);
    const from = variable.valueFrom as Json | undefined;
    if (from === undefined) {
      env[name] = expandVariables(String(variable.value ?? ""), env);
      continue;
    }
    const secretRef = from.secretKeyRef as Json | undefined;
    const fieldRef = from.fieldRef as Json | undefined;
    if (secretRef !== undefined) {
      const secret = api.get("secrets", pod.metadata.namespace, String(secretRef.name));
      if (secret === undefined) {
        if (secretRef.optional === true) continue;
        return `secret "${secretRef.name}" not found`;
      }
      const data = (secret.data ?? {}) as Record<string, string>;
      const value = data[String(secretRef.key)];
      if (value === undefined) {
        return `couldn't find key ${secretRef.key} in Secret ${pod.metadata.namespace}/` +
          `${secretRef.name}`;
      }
      env[name] = atob(value);
    } else if (fieldRef !== undefined) {
      const fields: Record<string, string> = {
        "metadata.name": pod.metadata.name,
        "metadata.namespace": pod.metadata.namespace,
        "metadata.uid": String(pod.metadata.uid),
        "spec.nodeName": NODE_NAME,
        "status.podIP": podIP,
        "status.hostIP": HOST_IP,
      };
      env[name] = fields[String(fieldRef.fieldPath)] ?? "";
    }
  }
  return env;
}
