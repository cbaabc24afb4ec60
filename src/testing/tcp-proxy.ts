/**
 * A loopback TCP proxy for fault injection: Tributary connects to the proxy, the proxy to the real server,
 * and the test cuts every open connection whenever it likes, as a flaky network or a failing load balancer
 * would. A cut is abrupt (`resetAndDestroy`, an RST where the platform allows), so neither side gets a clean
 * close it could mistake for a normal end of stream. Used by the chaos suite (test/chaos).
 */
import { connect, createServer, type Server, type Socket } from 'node:net';

export interface TcpProxy extends AsyncDisposable {
  readonly host: string;
  readonly port: number;
  /** Connections accepted so far, and connections cut by {@link cutAll}. */
  readonly stats: { readonly accepted: number; readonly cut: number };
  /** Resets every connection open right now; new connections are accepted as before. */
  cutAll(): number;
  close(): Promise<void>;
}

export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  const open = new Set<readonly [Socket, Socket]>();
  const stats = { accepted: 0, cut: 0 };
  const server: Server = createServer((client) => {
    stats.accepted++;
    const upstream = connect(target.port, target.host);
    const pair = [client, upstream] as const;
    open.add(pair);
    const drop = () => {
      open.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    // Errors are the point of this proxy: a reset on one side ends the other, nothing is thrown.
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('the proxy has no TCP address');
  const close = async () => {
    for (const [a, b] of open) {
      a.destroy();
      b.destroy();
    }
    open.clear();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  return {
    host: '127.0.0.1',
    port: address.port,
    stats,
    cutAll() {
      const n = open.size;
      for (const pair of [...open]) {
        open.delete(pair);
        for (const socket of pair) socket.resetAndDestroy();
      }
      stats.cut += n;
      return n;
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}
