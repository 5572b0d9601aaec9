import { randomBytes } from 'node:crypto';
import { lstat, mkdtemp, readdir, realpath, rename } from 'node:fs/promises';
import path from 'node:path';
import { exchangePaths } from '../lib/exchange.js';
import { fsyncDirectory } from '../lib/fsync.js';
import { removeTree } from '../lib/remove-tree.js';
import { checkRelativePath, errnoCode, resolveInsideRoot } from './paths.js';

/*
 * A directory restore leaves two kinds of siblings of its target `<parent>/<base>`, and nothing else:
 *   .<base>.restore-XXXXXX  the tree being extracted (mkdtemp), or, after an exchange, the old tree
 *   .<base>.old-<12 hex>    the old tree, only on file systems without RENAME_EXCHANGE, only
 *                           between the two renames and the removal
 * So after a crash: a `.restore-` leftover is garbage whatever the state; an `.old-` one is garbage
 * when the target exists, and is the target itself when it does not (the crash fell between the
 * two renames; the restore did not complete, so the old tree goes back).
 */
const TEMP_TOKEN = /^[A-Za-z0-9]{6}$/; // what mkdtemp appends
const OLD_TOKEN = /^[0-9a-f]{12}$/;

const tempPrefix = (base: string) => `.${base}.restore-`;
const oldPrefix = (base: string) => `.${base}.old-`;

/** Makes the empty directory a restore of `target` extracts into: a sibling, so the swap stays on one file system. */
export function makeRestoreTemp(target: string): Promise<string> {
  return mkdtemp(path.join(path.dirname(target), tempPrefix(path.basename(target))));
}

async function present(p: string): Promise<boolean> {
  try {
    await lstat(p);
    return true;
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return false;
    throw err;
  }
}

/**
 * Puts the finished, durable tree `temp` (from makeRestoreTemp) at `target`, replacing what is
 * there, and consumes `temp`: whatever happens, nothing is left at `temp` afterwards.
 *
 * Where the file system can, one renameat2(RENAME_EXCHANGE): the target is never missing, not
 * even for an instant, and a crash at any point leaves either tree complete at `target`. Where it
 * cannot (EINVAL on some file systems), two renames through an `.old-` sibling that
 * sweepRestoreLeftovers puts back should the process die between them.
 */
export async function swapIntoPlace(temp: string, target: string): Promise<void> {
  const parent = path.dirname(target);
  try {
    if (!(await present(target))) {
      await rename(temp, target);
    } else if ((await exchangePaths(temp, target)) === 'exchanged') {
      // `temp` now holds the old tree: removed below once the exchange is durable.
    } else {
      const old = path.join(parent, `${oldPrefix(path.basename(target))}${randomBytes(6).toString('hex')}`);
      await rename(target, old);
      try {
        await rename(temp, target);
      } catch (err) {
        await rename(old, target);
        throw err;
      }
      await fsyncDirectory(parent);
      await removeTree(old);
      return;
    }
    await fsyncDirectory(parent);
  } finally {
    await removeTree(temp);
  }
}

export interface SweepLog {
  info(obj: Record<string, unknown>, msg: string): void;
  warn(obj: Record<string, unknown>, msg: string): void;
}

export interface SweepOptions {
  /**
   * `.restore-` leftovers changed less than this long ago are kept: a restore another worker
   * has just begun (its mkdtemp) is not garbage. Default 60 s. `.old-` leftovers are handled at
   * once (they exist only for microseconds in a live restore, and a missing target is urgent).
   */
  graceMs?: number;
  now?: () => number;
}

export interface SweepReport {
  /** Targets whose old tree was put back (a swap interrupted between its two renames). */
  repaired: string[];
  /** Leftover trees removed. */
  removed: number;
  /** Leftovers kept because they are too recent (see graceMs). */
  kept: number;
}

/**
 * Cleans up after interrupted directory restores: removes `.restore-`/`.old-` leftovers and puts
 * the old tree back where a swap was cut between its two renames (target missing).
 *
 * Bounded by design: it looks only beside the given component targets (one readdir of each
 * distinct parent), never into the trees themselves, which may hold millions of entries. `root`
 * is the tenant's folder (what `dataRootOf` returns), `paths` the directory components'
 * `config.path`s, resolved exactly as a restore resolves them (symlinks inside `root`, never
 * out of it). Call it where no restore of those targets can be running: at worker start, for
 * the directory components of clusters without a running restore; the grace period covers a
 * restore starting meanwhile. Never throws for one bad target: it logs and goes on.
 */
export async function sweepRestoreLeftovers(root: string, paths: Iterable<string>, log: SweepLog, opts: SweepOptions = {}): Promise<SweepReport> {
  const graceMs = opts.graceMs ?? 60_000;
  const now = opts.now ?? Date.now;
  const report: SweepReport = { repaired: [], removed: 0, kept: 0 };
  // parent (real path) -> the target base names under it
  const byParent = new Map<string, Set<string>>();
  for (const rel of new Set(paths)) {
    if (checkRelativePath(rel)) continue; // never a valid component: nothing of ours there
    const parentRel = path.posix.dirname(rel);
    try {
      const parent = parentRel === '.' ? await realpath(root) : await resolveInsideRoot(root, parentRel);
      const bases = byParent.get(parent) ?? new Set<string>();
      bases.add(path.posix.basename(rel));
      byParent.set(parent, bases);
    } catch {
      // the parent is gone or escapes: nothing a restore could have left there
    }
  }
  for (const [parent, bases] of byParent) {
    let names: string[];
    try {
      names = await readdir(parent);
    } catch (err) {
      log.warn({ err, parent }, 'restore leftover sweep: cannot read a directory');
      continue;
    }
    for (const base of bases) {
      try {
        await sweepOne(parent, base, names, { graceMs, now }, log, report);
      } catch (err) {
        log.warn({ err, target: path.join(parent, base) }, 'restore leftover sweep failed for one target');
      }
    }
  }
  return report;
}

async function sweepOne(
  parent: string,
  base: string,
  names: string[],
  opts: Required<SweepOptions>,
  log: SweepLog,
  report: SweepReport,
): Promise<void> {
  const pick = (prefix: string, token: RegExp) => names.filter((n) => n.startsWith(prefix) && token.test(n.slice(prefix.length))).map((n) => path.join(parent, n));
  const temps = pick(tempPrefix(base), TEMP_TOKEN);
  const olds = pick(oldPrefix(base), OLD_TOKEN);
  if (temps.length === 0 && olds.length === 0) return;
  const target = path.join(parent, base);
  if (olds.length > 0 && !(await present(target))) {
    // Cut between the two renames. Should several be there (restores that each died there),
    // the most recently renamed one was the target last.
    const stats = await Promise.all(olds.map(async (p) => ({ p, ctime: (await lstat(p)).ctimeMs })));
    stats.sort((a, b) => b.ctime - a.ctime);
    const back = (stats[0] as { p: string }).p;
    await rename(back, target);
    await fsyncDirectory(parent);
    olds.splice(olds.indexOf(back), 1);
    report.repaired.push(target);
    log.warn({ target }, 'put back the tree an interrupted restore had moved aside');
  }
  let removed = 0;
  for (const old of olds) {
    await removeTree(old);
    removed++;
  }
  for (const temp of temps) {
    let ctime: number;
    try {
      ctime = (await lstat(temp)).ctimeMs;
    } catch {
      continue;
    }
    if (opts.now() - ctime < opts.graceMs) {
      report.kept++;
      continue;
    }
    await removeTree(temp);
    removed++;
  }
  report.removed += removed;
  if (removed > 0) log.info({ target, removed }, 'removed leftovers of interrupted restores');
}
