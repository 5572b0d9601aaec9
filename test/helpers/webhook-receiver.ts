import http from 'node:http';
import type net from 'node:net';
import { Webhook } from 'standardwebhooks';

export interface Received {
  path: string;
  headers: http.IncomingHttpHeaders;
  body: string;
  at: number;
}

/** What the receiver answers the n-th request (1-based) to a path: a status, a redirect, or nothing (hang until the client gives up). */
export type Reply = number | { status: number; location: string } | 'hang';

/**
 * A webhook receiver on 127.0.0.1 (or another loopback address), for tests: records every
 * request and every connection, answers each path as told (200 by default).
 */
export async function startReceiver(opts: { host?: string; port?: number } = {}) {
  const received: Received[] = [];
  const replies = new Map<string, (n: number) => Reply>();
  let connections = 0;
  const hung = new Set<http.ServerResponse>();
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const path = req.url ?? '/';
      received.push({ path, headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), at: Date.now() });
      const n = received.filter((r) => r.path === path).length;
      const reply = replies.get(path)?.(n) ?? 200;
      if (reply === 'hang') {
        hung.add(res);
        res.on('close', () => hung.delete(res));
        return;
      }
      if (typeof reply === 'number') res.writeHead(reply, { 'content-type': 'text/plain' }).end(String(reply));
      else res.writeHead(reply.status, { location: reply.location }).end();
    });
  });
  server.on('connection', (s: net.Socket) => {
    connections++;
    s.on('error', () => {});
  });
  await new Promise<void>((resolve) => server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  const host = opts.host ?? '127.0.0.1';
  return {
    port,
    url: (path: string) => `http://${host}:${port}${path}`,
    received,
    at: (path: string) => received.filter((r) => r.path === path),
    connections: () => connections,
    reply(path: string, fn: (n: number) => Reply) {
      replies.set(path, fn);
    },
    async close() {
      for (const res of hung) res.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
export type Receiver = Awaited<ReturnType<typeof startReceiver>>;

/** Checks a received request's Standard Webhooks signature with the reference library; returns the parsed body. */
export function verified(secret: string, r: Received): any {
  return new Webhook(secret).verify(r.body, {
    'webhook-id': String(r.headers['webhook-id']),
    'webhook-timestamp': String(r.headers['webhook-timestamp']),
    'webhook-signature': String(r.headers['webhook-signature']),
  });
}
