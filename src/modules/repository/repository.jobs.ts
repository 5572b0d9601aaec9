import type { Logger } from 'pino';
import type { Db } from '../../db/client.js';
import type { RepoService } from '../../repo/service.js';
import { collectGarbage } from '../../repo/gc.js';
import { verifyPackCopies } from '../../repo/verify-packs.js';

export interface RepositoryJobSettings {
  gcGraceMs: number;
  gcRepackThreshold: number;
  verifySamplePercent: number;
}

/** The `gc` job: one tenant's repository (collectGarbage), then its request cleared if none came since it began. */
export function createGcJob(deps: { db: Db; repo: RepoService; settings: RepositoryJobSettings; now: () => Date; log: Logger; signal?: AbortSignal }) {
  return async function gc(payload: { tenant_id: string }): Promise<void> {
    const row = await deps.db.repository.findUnique({ where: { tenantId: payload.tenant_id } });
    if (!row) return;
    const began = deps.now();
    await collectGarbage({
      pool: deps.db.$pool,
      primary: deps.repo.primary,
      secondary: deps.repo.secondary,
      seal: deps.repo.seal,
      keys: await deps.repo.repositories.keysOf(payload.tenant_id),
      tenantId: payload.tenant_id,
      graceMs: deps.settings.gcGraceMs,
      repackThreshold: deps.settings.gcRepackThreshold,
      packTargetBytes: deps.repo.settings.packTargetBytes,
      now: deps.now,
      log: deps.log,
      ...(deps.signal && { signal: deps.signal }),
    });
    await deps.db.repository.updateMany({ where: { tenantId: payload.tenant_id }, data: { gcRanAt: began } });
    await deps.db.repository.updateMany({ where: { tenantId: payload.tenant_id, gcRequestedAt: { lte: began } }, data: { gcRequestedAt: null } });
  };
}

/**
 * The periodic sampled check: re-reads VERIFY_SAMPLE_PERCENT of a tenant's live packs (at least
 * one), whole, at every location, and records on each pack when it was checked and what was wrong.
 */
export function createSampleVerifier(deps: { db: Db; repo: RepoService; settings: RepositoryJobSettings; now: () => Date; log: Logger }) {
  return async function verifySample(payload: { tenant_id: string }): Promise<void> {
    const total = await deps.db.pack.count({ where: { tenantId: payload.tenant_id, status: 'live' } });
    if (total === 0) return;
    const n = Math.max(1, Math.ceil((total * deps.settings.verifySamplePercent) / 100));
    // The packs checked longest ago (never first), so that successive sweeps cover them all.
    const packs = await deps.db.pack.findMany({
      where: { tenantId: payload.tenant_id, status: 'live' },
      orderBy: [{ verifiedAt: { sort: 'asc', nulls: 'first' } }, { id: 'asc' }],
      take: n,
    });
    const keys = await deps.repo.repositories.keysOf(payload.tenant_id);
    for (const p of packs) {
      const problems = await verifyPackCopies(deps.repo, keys, p.tenantId, p);
      if (problems.length) deps.log.error({ tenant_id: p.tenantId, pack: p.id, problems }, 'sampled verification found a damaged pack');
      await deps.db.pack.updateMany({ where: { id: p.id }, data: { verifiedAt: deps.now(), verifyError: problems.length ? problems.join('; ') : null } });
    }
    await deps.db.repository.updateMany({ where: { tenantId: payload.tenant_id }, data: { verifiedAt: deps.now() } });
  };
}
