// One GC run of one tenant's repository, as its own process (see startGcChild in repo-procs.ts).
// env: DATABASE_URL, STORAGE_URL, ENCRYPTION_KEY (base64), TENANT_ID, GRACE_MS, REPACK_THRESHOLD,
// PACK_TARGET_BYTES, PAUSE ("doom:N" | "put:N" | "delete:N" | unset).
import type pg from 'pg';
import { createDb } from '../../src/db/client.js';
import { collectGarbage } from '../../src/repo/gc.js';
import { createRepositories } from '../../src/repo/repository.js';
import { sharedSealPool } from '../../src/repo/seal-pool.js';
import { createStore } from '../../src/storage/index.js';
import type { ArtifactStore } from '../../src/storage/types.js';

const env = process.env;
const [pauseKind, pauseAtRaw] = (env.PAUSE ?? '').split(':');
const pauseAt = Number(pauseAtRaw ?? 0);
const seen: Record<string, number> = { doom: 0, put: 0, delete: 0 };

/** Counts `kind`; at the chosen one, says so and never returns (the test kills us here). */
async function point(kind: 'doom' | 'put' | 'delete', what: string): Promise<void> {
  seen[kind]!++;
  console.log(`${kind.toUpperCase()} ${seen[kind]} ${what}`);
  if (kind === pauseKind && seen[kind] === pauseAt) {
    console.log(`PAUSED ${kind}:${pauseAt} ${what}`);
    await new Promise(() => {});
  }
}

const db = createDb(env.DATABASE_URL!, { poolSize: 4, connectTimeoutMs: 5000 });
const store = createStore(env.STORAGE_URL!);
const repositories = createRepositories({ db, masterKey: Buffer.from(env.ENCRYPTION_KEY!, 'base64'), stores: () => [store] });

const DOOM = /UPDATE packs SET status = 'doomed'/;
function watchedQuery<T extends Pick<pg.Pool, 'query'>>(target: T) {
  return async (text: unknown, ...rest: unknown[]) => {
    if (typeof text === 'string' && DOOM.test(text)) await point('doom', String((rest[0] as unknown[] | undefined)?.[0] ?? ''));
    return (target.query as (...a: unknown[]) => unknown)(text, ...rest);
  };
}
const pool = new Proxy(db.$pool, {
  get(target, prop, receiver) {
    if (prop === 'query') return watchedQuery(target);
    if (prop === 'connect')
      return async () => {
        const client = await target.connect();
        return new Proxy(client, { get: (c, p, r) => (p === 'query' ? watchedQuery(c) : Reflect.get(c, p, r)) });
      };
    return Reflect.get(target, prop, receiver);
  },
}) as pg.Pool;
const primary = new Proxy(store, {
  get(target, prop, receiver) {
    if (prop === 'putBuffer')
      return async (key: string, body: Buffer) => {
        const r = await target.putBuffer(key, body);
        await point('put', key);
        return r;
      };
    if (prop === 'delete')
      return async (key: string) => {
        await target.delete(key);
        if (key.includes('/packs/')) await point('delete', key);
      };
    return Reflect.get(target, prop, receiver);
  },
}) as ArtifactStore;

const t0 = Date.now();
const report = await collectGarbage({
  pool,
  primary,
  secondary: null,
  seal: sharedSealPool(),
  keys: await repositories.keysOf(env.TENANT_ID!),
  tenantId: env.TENANT_ID!,
  graceMs: Number(env.GRACE_MS ?? 0),
  repackThreshold: Number(env.REPACK_THRESHOLD ?? 0.5),
  packTargetBytes: Number(env.PACK_TARGET_BYTES ?? 1048576),
  now: () => new Date(),
});
console.log(`REPORT ${JSON.stringify({ ...report, ms: Date.now() - t0 })}`);
await db.$disconnect();
process.exit(0);
