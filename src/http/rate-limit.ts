import { createRequire } from 'node:module';
import rateLimit from '@fastify/rate-limit';
import type { FastifyRequest } from 'fastify';
import type { Redis } from 'ioredis';
import { RateLimited } from '../errors.js';
import { bearerToken } from './auth.js';
import { hashToken } from '../crypto/tokens.js';
import type { App } from './types.js';

/**
 * Token hashes this process authenticated lately, each with its rate-limit bucket. The limiter
 * runs before authentication, so it cannot ask the database whether a token is valid: a token
 * it has seen authenticate gets its credential's own bucket, and anything else (no token, a
 * bad one, or a good one this process has not seen yet) counts against the client address.
 * Random tokens therefore share their sender's budget instead of each opening a fresh one.
 * Bounded (LRU) and expiring, so revoked or forgotten keys fall back to the address.
 */
export function createRecentCredentials(opts: { max?: number; ttlMs?: number; now?: () => number } = {}) {
  const max = opts.max ?? 10_000;
  const ttlMs = opts.ttlMs ?? 10 * 60_000;
  const now = opts.now ?? Date.now;
  const entries = new Map<string, { bucket: string; at: number }>();
  return {
    remember(tokenHash: string, bucket: string) {
      entries.delete(tokenHash); // re-insert: Map order is the LRU order
      entries.set(tokenHash, { bucket, at: now() });
      if (entries.size > max) entries.delete(entries.keys().next().value!);
    },
    forget(tokenHash: string) {
      entries.delete(tokenHash);
    },
    bucketOf(tokenHash: string): string | undefined {
      const e = entries.get(tokenHash);
      if (!e) return undefined;
      if (now() - e.at > ttlMs) {
        entries.delete(tokenHash);
        return undefined;
      }
      return e.bucket;
    },
  };
}
export type RecentCredentials = ReturnType<typeof createRecentCredentials>;

type Counted = { current: number; ttl: number };
type Done = (err: Error | null, res: Counted | null) => void;
interface CounterStore {
  incr(key: string, cb: Done, timeWindow: number, max: number): void;
}
type StoreCtor = new (continueExceeding: boolean, exponentialBackoff: boolean, ...rest: unknown[]) => CounterStore;
// The plugin's own stores (CommonJS, untyped); only their incr is used.
const require = createRequire(import.meta.url);
const RedisStore = require('@fastify/rate-limit/store/RedisStore.js') as StoreCtor;
const LocalStore = require('@fastify/rate-limit/store/LocalStore.js') as StoreCtor;

/**
 * Counters in Redis, shared by every API instance; while Redis cannot answer (an outage, or the
 * first moments before the connection is up), in-process counters take over, so a flood is
 * still limited per instance and a Redis outage never blocks requests.
 */
function fallbackStore(redis: Redis | null, nameSpace: string) {
  return class FallbackStore implements CounterStore {
    private readonly local: CounterStore;
    private readonly shared: CounterStore | null;
    constructor(params: { continueExceeding: boolean; exponentialBackoff: boolean }) {
      this.local = new LocalStore(params.continueExceeding, params.exponentialBackoff, 10_000);
      this.shared = redis ? new RedisStore(params.continueExceeding, params.exponentialBackoff, redis, nameSpace) : null;
    }
    incr(key: string, cb: Done, timeWindow: number, max: number) {
      if (!this.shared) return this.local.incr(key, cb, timeWindow, max);
      this.shared.incr(key, (err, res) => (err ? this.local.incr(key, cb, timeWindow, max) : cb(null, res)), timeWindow, max);
    }
    child(): CounterStore {
      return this; // routes carry no limits of their own
    }
  };
}

export interface RateLimitDeps {
  max: number;
  windowMs: number;
  /** Shared counter store; null: in-process counters. */
  redis: Redis | null;
  prefix: string;
  recent: RecentCredentials;
}

/** Probes stay unlimited so an orchestrator never sees a 429. */
export const UNLIMITED = new Set(['/healthz', '/readyz']);

export function rateLimitKey(req: FastifyRequest, recent: RecentCredentials): string {
  const token = bearerToken(req);
  const bucket = token && token.length <= 200 ? recent.bucketOf(hashToken(token)) : undefined;
  return bucket ? `c:${bucket}` : `ip:${req.ip}`;
}

/**
 * Registers the limiter as an application-wide onRequest hook. Application hooks run before
 * route-level ones, so it runs ahead of every auth guard (which are route onRequest hooks):
 * a request past the limit costs no database lookup. (@fastify/rate-limit's own `global` mode
 * appends its hook to each route's onRequest list, after the guard.)
 */
export async function registerRateLimit(app: App, deps: RateLimitDeps): Promise<void> {
  await app.register(rateLimit, {
    global: false,
    max: deps.max,
    timeWindow: deps.windowMs,
    store: fallbackStore(deps.redis, `${deps.prefix}:ratelimit:`) as never,
    skipOnError: true,
    enableDraftSpec: true,
    allowList: (req) => UNLIMITED.has(req.url.split('?')[0]!),
    keyGenerator: (req) => rateLimitKey(req, deps.recent),
    errorResponseBuilder: (_req, ctx) =>
      new RateLimited(
        `too many requests: at most ${ctx.max} per ${Math.round(deps.windowMs / 1000)} s for this credential or client address; retry in ${ctx.after}`,
        Math.max(1, Math.ceil(ctx.ttl / 1000)),
      ),
  });
  const limit = app.rateLimit();
  app.addHook('onRequest', async function (req, reply) {
    await limit.call(this, req, reply);
  });
}
