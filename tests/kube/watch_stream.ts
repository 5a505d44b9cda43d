/**
 * The fake API server's watches: each a streamed response of newline-delimited
 * JSON events (synthetic ADDED events for a watch from no version, a replay of
 * the history after a given one, an `ERROR` with a 410 `Status` when that
 * history was compacted away), then every change as the store makes it, until
 * `timeoutSeconds` or until a test ends it cleanly or breaks it off.
 *
 * @module
 */

import type { KObject, Resource } from "./api_objects.ts";
import type { ObjectStore, StoreEvent } from "./object_store.ts";
import { selectorOf } from "./selectors.ts";
import { statusBody } from "./status.ts";

/** How a watch ends: "clean" finishes the response, "reset" breaks it off mid-stream. */
export type WatchEnd = "clean" | "reset";

/** The error a watch broken off on purpose fails its response body with. */
export const WATCH_RESET_MESSAGE = "connection reset by the fake API server";

interface Watcher {
  resource: Resource;
  namespace: string;
  matches: (object: KObject) => boolean;
  send: (type: string, object: unknown) => void;
  end: (mode: WatchEnd) => void;
}

/** The open watches on one store; see the module documentation. */
export class WatchHub {
  #store: ObjectStore;
  #watchers = new Set<Watcher>();

  /** Follows `store`; subscribe it before anything else, so watches see changes first. */
  constructor(store: ObjectStore) {
    this.#store = store;
    store.subscribe((event) => this.#publish(event));
  }

  /** How many watches are open. */
  get size(): number {
    return this.#watchers.size;
  }

  /** Ends every open watch; returns how many there were. */
  endAll(mode: WatchEnd): number {
    const count = this.#watchers.size;
    for (const watcher of [...this.#watchers]) watcher.end(mode);
    return count;
  }

  /** The streamed answer to a watch request; throws on an invalid selector. */
  open(resource: Resource, namespace: string, url: URL): Response {
    const matches = selectorOf(url, resource);
    const timeoutSeconds = Number(url.searchParams.get("timeoutSeconds") ?? "1800");
    const from = url.searchParams.get("resourceVersion");
    const encoder = new TextEncoder();
    let watcher: Watcher | undefined;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const body = new ReadableStream<Uint8Array>({
      start: (controller): void => {
        let open = true;
        const end = (mode: WatchEnd): void => {
          if (!open) return;
          open = false;
          clearTimeout(timer);
          if (watcher !== undefined) this.#watchers.delete(watcher);
          if (mode === "clean") controller.close();
          else controller.error(new Error(WATCH_RESET_MESSAGE));
        };
        const send = (type: string, object: unknown): void => {
          if (open) controller.enqueue(encoder.encode(JSON.stringify({ type, object }) + "\n"));
        };
        watcher = { resource, namespace, matches, send, end };
        if (from !== null && from !== "" && from !== "0") {
          const history = this.#store.historySince(Number(from));
          if (history === undefined) {
            const latest = this.#store.resourceVersion;
            send(
              "ERROR",
              statusBody(410, "Expired", `too old resource version: ${from} (${latest})`),
            );
            end("clean");
            return;
          }
          for (const event of history) {
            if (
              event.resource === resource && event.object.metadata.namespace === namespace &&
              matches(event.object)
            ) {
              send(event.type, event.object);
            }
          }
        } else {
          for (const object of this.#store.list(resource, namespace)) {
            if (matches(object)) send("ADDED", object);
          }
        }
        this.#watchers.add(watcher);
        timer = setTimeout(() => end("clean"), timeoutSeconds * 1000);
      },
      cancel: (): void => {
        clearTimeout(timer);
        if (watcher !== undefined) this.#watchers.delete(watcher);
      },
    });
    return new Response(body, {
      status: 200,
      headers: { "content-type": "application/json", "transfer-encoding": "chunked" },
    });
  }

  #publish(event: StoreEvent): void {
    const object = event.object;
    for (const watcher of this.#watchers) {
      if (
        watcher.resource === event.resource &&
        (watcher.namespace === "" || watcher.namespace === object.metadata.namespace) &&
        watcher.matches(object)
      ) {
        watcher.send(event.type, object);
      }
    }
  }
}
