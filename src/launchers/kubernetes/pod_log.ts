/**
 * The fallback when a relay never phoned home: show what the pod log API still
 * has, so the user is never left with nothing.
 *
 * @module
 */

import { settlesWithin } from "../../timing.ts";
import type { BuildReceiver } from "../../receiver/receiver.ts";
import type { KubeClient } from "./client.ts";

/** Most of a pod log shown as a fallback. */
const FALLBACK_LOG_LIMIT_BYTES = 10 * 1024 * 1024;

/** How long fetching the fallback log may take. */
const FALLBACK_LOG_TIMEOUT_MS = 15_000;

/** What to show. */
export interface PodLogRequest {
  client: KubeClient;
  receiver: BuildReceiver;
  pod: string;
  container: string;
  /** The sentence before the log. */
  heading: string;
}

async function copy(stream: ReadableStream<Uint8Array>, receiver: BuildReceiver): Promise<void> {
  for await (const chunk of stream) await receiver.writeStdout(chunk);
}

/**
 * Writes the container's log to the receiver's stdout after `heading` on its
 * stderr; resolves with whether there was anything to show. Never throws: the
 * log is a courtesy, and the failure it accompanies is what gets reported.
 */
export async function showPodLog(request: PodLogRequest): Promise<boolean> {
  const controller = new AbortController();
  let shown = false;
  const work = (async (): Promise<void> => {
    const stream = await request.client.openLog({
      pod: request.pod,
      container: request.container,
      limitBytes: FALLBACK_LOG_LIMIT_BYTES,
      signal: controller.signal,
    });
    if (stream === undefined) return;
    const reader = stream.getReader();
    const first = await reader.read();
    reader.releaseLock();
    if (first.done || first.value.byteLength === 0) {
      await stream.cancel();
      return;
    }
    shown = true;
    await request.receiver.message(request.heading);
    await request.receiver.writeStdout(first.value);
    await copy(stream, request.receiver);
  })();
  // Under Deno an aborted fetch may never settle, so the deadline cannot rely on it.
  if (!(await settlesWithin(work, FALLBACK_LOG_TIMEOUT_MS))) {
    controller.abort();
    if (shown) await request.receiver.message("The pod log took too long; the rest is cut off.");
    return shown;
  }
  await work.catch(() => {});
  return shown;
}
