import type { Db } from './client.js';

/** Advisory lock class of the periodic sweeps ('bkup'); the object id names the sweep. */
const LOCK_CLASS = 0x626b7570;
export const LEADER_LOCKS = { reconcile: 1, retentionSweep: 2 } as const;
export type LeaderLock = keyof typeof LEADER_LOCKS;

/**
 * Runs `fn` on one process at a time across every scheduler: `fn` runs only while this process
 * holds the advisory lock `name`; when another holds it, `fn` is skipped and this answers
 * `{ ran: false }`.
 *
 * The lock is transaction-scoped (`pg_try_advisory_xact_lock`) and its transaction stays open,
 * idle, while `fn` runs on the pool's other connections. A session lock would have to be taken and
 * released on the same pooled connection, which Prisma does not promise; a transaction's lock is
 * released with it in every case: commit, rollback, a lost connection or a dead process. The open
 * transaction has no snapshot and no transaction id between statements, so it holds back no
 * vacuum. After `holdMs` Prisma ends the transaction and another scheduler may take over; every
 * sweep is idempotent, so an overlap repeats a little work and breaks nothing.
 */
export async function asLeader<T>(db: Db, name: LeaderLock, holdMs: number, fn: () => Promise<T>): Promise<{ ran: true; value: T } | { ran: false }> {
  let outcome: { ran: true; value: T } | { ran: false } = { ran: false };
  try {
    await db.$transaction(
      async (tx) => {
        const [row] = await tx.$queryRaw<{ locked: boolean }[]>`SELECT pg_try_advisory_xact_lock(${LOCK_CLASS}::int, ${LEADER_LOCKS[name]}::int) AS locked`;
        if (!row?.locked) return;
        outcome = { ran: true, value: await fn() };
      },
      { timeout: holdMs },
    );
  } catch (err) {
    // The transaction outlived holdMs: the lock is gone but fn's work is done, and it stands.
    if (!outcome.ran) throw err;
  }
  return outcome;
}
