import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import type { LookupFunction } from 'node:net';
import type { UrlGuard } from '../../net/url-guard.js';
import { signWebhook, unixSeconds } from './signing.js';

/** What one attempt came to, as GET /v1/webhooks/{id}/deliveries shows it. */
export interface SendResult {
  outcome: 'delivered' | 'failed';
  /** The receiver's HTTP status; null when none came (refused by the guard, connection error, timeout). */
  statusCode: number | null;
  durationMs: number;
  /** Why it failed, fit for the tenant; null when delivered. */
  error: string | null;
  /** The guard refused the URL (or it no longer resolves): the attempt never connected. */
  refused?: boolean;
}

export interface WebhookMessage {
  /** webhook-id: the event's id (receivers deduplicate on it). */
  id: string;
  /** webhook-timestamp. */
  timestamp: Date;
  /** The JSON body, exactly as signed. */
  body: string;
}

/**
 * One signed POST per call (Standard Webhooks): the URL checked again by the SSRF guard, the
 * connection made only to the addresses it returned, no redirects followed, a 2xx within the
 * timeout is success.
 */
export interface WebhookSender {
  send(target: { url: string; secret: string }, message: WebhookMessage): Promise<SendResult>;
}

const USER_AGENT = 'backup-service-webhooks/1';
/** What is read of a receiver's answer: the body is not kept, only drained (up to this). */
const MAX_RESPONSE_BYTES = 64 * 1024;

/**
 * A DNS lookup that answers only the addresses the guard checked: whatever name the request
 * carries (for the Host header and TLS), the socket connects to one of these, so a DNS answer
 * that changed since the check cannot send the request elsewhere.
 */
function pinnedLookup(addresses: string[]): LookupFunction {
  const entries = addresses.map((address) => ({ address, family: net.isIPv6(address) ? 6 : 4 }));
  return ((_host: string, options: { all?: boolean; family?: number | string }, callback: (...args: unknown[]) => void) => {
    const family = options?.family === 6 || options?.family === 'IPv6' ? 6 : options?.family === 4 || options?.family === 'IPv4' ? 4 : 0;
    const usable = family ? entries.filter((e) => e.family === family) : entries;
    if (usable.length === 0) return callback(Object.assign(new Error('no checked address of that family'), { code: 'ENOTFOUND' }));
    if (options?.all) return callback(null, usable);
    callback(null, usable[0]!.address, usable[0]!.family);
  }) as LookupFunction;
}

/** A connection error as the tenant may read it (no stack, no internals). */
function describeError(err: NodeJS.ErrnoException, host: string): string {
  switch (err.code) {
    case 'ECONNREFUSED':
      return `connection refused by ${host}`;
    case 'ECONNRESET':
    case 'EPIPE':
      return `connection reset by ${host}`;
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return `${host} is unreachable`;
    case 'ETIMEDOUT':
      return `connecting to ${host} timed out`;
    default:
      if (err.code?.startsWith('ERR_TLS') || err.code?.includes('CERT') || /certificate|SSL|TLS/i.test(err.message)) return `TLS handshake with ${host} failed: ${err.message}`;
      return `request to ${host} failed: ${err.code ?? err.message}`;
  }
}

export function createWebhookSender(opts: { urlGuard: UrlGuard; timeoutMs: number }): WebhookSender {
  return {
    async send(target, message) {
      const started = performance.now();
      const elapsed = () => Math.round(performance.now() - started);
      const failed = (error: string, statusCode: number | null = null, refused = false): SendResult => ({
        outcome: 'failed',
        statusCode,
        durationMs: elapsed(),
        error,
        ...(refused && { refused: true }),
      });
      // The whole attempt, the guard's DNS lookup included, fits in the timeout.
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), opts.timeoutMs)));
      try {
        const verdict = await Promise.race([opts.urlGuard.check(target.url), deadline]);
        if (verdict === 'timeout') return failed(`timed out after ${opts.timeoutMs} ms (resolving the host)`);
        if (!verdict.ok) return failed(`URL refused: ${verdict.problem}`, null, true);
        const timestamp = unixSeconds(message.timestamp);
        const body = Buffer.from(message.body, 'utf8');
        const headers = {
          'content-type': 'application/json',
          'content-length': String(body.length),
          'user-agent': USER_AGENT,
          'webhook-id': message.id,
          'webhook-timestamp': String(timestamp),
          'webhook-signature': signWebhook(target.secret, message.id, timestamp, message.body),
        };
        const { url, host, port } = verdict;
        const isHttps = url.protocol === 'https:';
        const request = (isHttps ? https : http).request({
          method: 'POST',
          protocol: url.protocol,
          // The name stays for the Host header and the certificate check; the lookup pins the address.
          host,
          port,
          path: `${url.pathname}${url.search}`,
          headers: { ...headers, host: url.host },
          lookup: pinnedLookup(verdict.addresses),
          agent: false, // one connection per attempt: never a socket pooled for another address
          ...(isHttps && net.isIP(host) === 0 && { servername: host }),
        });
        const answer = new Promise<SendResult>((resolve) => {
          // `on`, not `once`: a later error (the socket destroyed after a timeout) must not go unhandled.
          request.on('error', (err: NodeJS.ErrnoException) => resolve(failed(describeError(err, host))));
          request.once('response', (res) => {
            const status = res.statusCode ?? 0;
            // The verdict is the status line; the body is drained (bounded) so the socket closes cleanly.
            let read = 0;
            res.on('data', (chunk: Buffer) => {
              read += chunk.length;
              if (read > MAX_RESPONSE_BYTES) res.destroy();
            });
            res.on('error', () => {});
            if (status >= 200 && status < 300) return resolve({ outcome: 'delivered', statusCode: status, durationMs: elapsed(), error: null });
            if (status >= 300 && status < 400) {
              const where = typeof res.headers.location === 'string' ? ` to ${res.headers.location.slice(0, 200)}` : '';
              return resolve(failed(`redirect (${status})${where} not followed: webhook URLs must answer 2xx themselves`, status));
            }
            resolve(failed(`receiver answered ${status}`, status));
          });
        });
        request.end(body);
        const outcome = await Promise.race([answer, deadline]);
        if (outcome === 'timeout') {
          request.destroy();
          return failed(`timed out after ${opts.timeoutMs} ms without a 2xx answer`);
        }
        // Delivered or not, this attempt is over: nothing more is read from the receiver.
        setImmediate(() => request.destroy());
        return outcome;
      } finally {
        clearTimeout(timer);
      }
    },
  };
}
