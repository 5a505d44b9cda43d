/**
 * The plain TCP relay clients reach the fake API server through, so that a
 * test can cut their connections the way a crashing server or a dying link
 * does (Deno.serve has no way to): every connection, or the one a request
 * came in on.
 *
 * @module
 */

/** Relays each connection made to its own port to the server's port; see the module documentation. */
export class LinkRelay {
  #front: Deno.Listener;
  #serverPort: number;
  #links = new Set<Deno.Conn>();
  /** How to cut each link, by the port its server side connects from. */
  #cutters = new Map<number, () => void>();

  /** Listens on a free port of 127.0.0.1, relaying to `serverPort` there. */
  constructor(serverPort: number) {
    this.#serverPort = serverPort;
    this.#front = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.#accept();
  }

  /** The port clients connect to. */
  get port(): number {
    return (this.#front.addr as Deno.NetAddr).port;
  }

  /** Stops taking new connections. */
  close(): void {
    this.#front.close();
  }

  /** Cuts every connection at the TCP level, mid-stream; returns how many there were. */
  cutAll(): number {
    const count = this.#links.size / 2;
    for (const conn of [...this.#links]) {
      this.#links.delete(conn);
      try {
        conn.close();
      } catch {
        // Already closed.
      }
    }
    return count;
  }

  /** Cuts the connection whose server side connects from `serverSidePort`. */
  cut(serverSidePort: number): void {
    this.#cutters.get(serverSidePort)?.();
  }

  async #accept(): Promise<void> {
    for await (const client of this.#front) {
      let server: Deno.Conn;
      try {
        server = await Deno.connect({ hostname: "127.0.0.1", port: this.#serverPort });
      } catch {
        client.close();
        continue;
      }
      this.#links.add(client);
      this.#links.add(server);
      const port = (server.localAddr as Deno.NetAddr).port;
      const close = (): void => {
        this.#cutters.delete(port);
        for (const conn of [client, server]) {
          if (this.#links.delete(conn)) {
            try {
              conn.close();
            } catch {
              // Already closed.
            }
          }
        }
      };
      this.#cutters.set(port, close);
      client.readable.pipeTo(server.writable, { preventClose: true }).catch(() => {}).finally(
        close,
      );
      server.readable.pipeTo(client.writable, { preventClose: true }).catch(() => {}).finally(
        close,
      );
    }
  }
}
