/**
 * The fake API server's store: objects by resource, namespace and name, a
 * resource version that every change bumps, the history of changes that
 * watches resume from (until it is compacted), and listeners told of each
 * change as it happens.
 *
 * @module
 */

import { type KObject, now, type Resource } from "./api_objects.ts";

/** A change to the store, as watchers and in-process controllers see it. */
export interface StoreEvent {
  type: "ADDED" | "MODIFIED" | "DELETED";
  resource: Resource;
  object: KObject;
  resourceVersion: number;
}

/** The objects of a fake API server and their history; see the module documentation. */
export class ObjectStore {
  #objects = new Map<string, KObject>();
  #history: StoreEvent[] = [];
  /** Events at or below this version are forgotten: resuming from before it gets 410. */
  #compactedThrough = 0;
  #resourceVersion = 1000;
  #listeners = new Set<(event: StoreEvent) => void>();

  /** The latest resource version handed out. */
  get resourceVersion(): number {
    return this.#resourceVersion;
  }

  /** An object, or undefined. */
  get(resource: Resource, namespace: string, name: string): KObject | undefined {
    const object = this.#objects.get(`${resource}/${namespace}/${name}`);
    return object === undefined ? undefined : structuredClone(object);
  }

  /** Whether an object of that name is stored. */
  has(resource: Resource, namespace: string, name: string): boolean {
    return this.#objects.has(`${resource}/${namespace}/${name}`);
  }

  /** Every object of a resource, optionally in one namespace. */
  list(resource: Resource, namespace?: string): KObject[] {
    return [...this.#objects.entries()]
      .filter(([key, object]) =>
        key.startsWith(`${resource}/`) &&
        (namespace === undefined || object.metadata.namespace === namespace)
      )
      .map(([, object]) => structuredClone(object));
  }

  /**
   * Calls `listener` for every change, after the listeners subscribed before
   * it; returns a function that stops it.
   */
  subscribe(listener: (event: StoreEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Resolves with the first event (to come) that `test` accepts. */
  waitForEvent(test: (event: StoreEvent) => boolean): Promise<StoreEvent> {
    return new Promise((resolve) => {
      const stop = this.subscribe((event) => {
        if (test(event)) {
          stop();
          resolve(event);
        }
      });
    });
  }

  /** Stores a new object (as a controller would create it) and announces it. */
  insert(resource: Resource, object: KObject): KObject {
    const metadata = object.metadata;
    metadata.uid = crypto.randomUUID();
    metadata.creationTimestamp = now();
    metadata.resourceVersion = this.#nextVersion();
    this.#objects.set(`${resource}/${metadata.namespace}/${metadata.name}`, object);
    this.#emit("ADDED", resource, object);
    return structuredClone(object);
  }

  /** Changes a stored object in place and announces it; undefined when it is gone. */
  update(
    resource: Resource,
    namespace: string,
    name: string,
    change: (object: KObject) => void,
  ): KObject | undefined {
    const object = this.#objects.get(`${resource}/${namespace}/${name}`);
    if (object === undefined) return undefined;
    change(object);
    object.metadata.resourceVersion = this.#nextVersion();
    this.#emit("MODIFIED", resource, object);
    return structuredClone(object);
  }

  /** Removes an object for good and announces it. */
  remove(resource: Resource, namespace: string, name: string): KObject | undefined {
    const key = `${resource}/${namespace}/${name}`;
    const object = this.#objects.get(key);
    if (object === undefined) return undefined;
    this.#objects.delete(key);
    object.metadata.resourceVersion = this.#nextVersion();
    this.#emit("DELETED", resource, object);
    return structuredClone(object);
  }

  /** Forgets the event history, so resuming a watch from an older version gets 410 Gone. */
  compact(): void {
    // As if other objects had changed since: every version seen so far is now too old.
    this.#compactedThrough = ++this.#resourceVersion;
    this.#history = [];
  }

  /** The changes after version `since`, oldest first; undefined when compacted away. */
  historySince(since: number): StoreEvent[] | undefined {
    if (!(since >= this.#compactedThrough)) return undefined;
    return this.#history.filter((event) => event.resourceVersion > since);
  }

  #nextVersion(): string {
    return String(++this.#resourceVersion);
  }

  #emit(type: StoreEvent["type"], resource: Resource, object: KObject): void {
    const event: StoreEvent = {
      type,
      resource,
      object: structuredClone(object),
      resourceVersion: Number(object.metadata.resourceVersion),
    };
    this.#history.push(event);
    for (const listener of [...this.#listeners]) listener(event);
  }
}
