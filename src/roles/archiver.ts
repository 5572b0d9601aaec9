import { hostname } from 'node:os';
import { randomUUID } from 'node:crypto';
import type { Runtime } from '../runtime.js';
import { startArchiver, type Archiver } from '../modules/pitr/archiver.js';

/** The archiver role (SPEC section 13): streams continuous postgres components' WAL into the repository. */
export function startArchiverRole(rt: Runtime): Archiver {
  return startArchiver({
    db: rt.db,
    box: rt.box,
    targets: rt.targets,
    repo: rt.repo,
    log: rt.log.child({ role: 'archiver' }),
    now: rt.now,
    leaseMs: rt.config.pitr.archiverLeaseMs,
    workDir: rt.config.pitr.workDir,
    id: `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`,
  });
}
