import { readdir, readFile, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { ToolLog } from '../process.js';

/** Scratch instances live in `<PITR_WORK_DIR>/pitr-scratch-<hex>/`, with an `owner` file: `<pid> <process start time>`. */
export const DIR_PREFIX = 'pitr-scratch-';

/**
 * Removes scratch directories in `workDir` that no live process of ours owns any more (a worker
 * killed mid-restore), stopping their server first (immediate shutdown). A directory whose owner
 * record cannot be read is removed once it is older than `olderThanMs`. Returns the names removed.
 */
export async function sweepScratch(workDir: string, opts: { olderThanMs?: number; log?: ToolLog } = {}): Promise<string[]> {
  const olderThanMs = opts.olderThanMs ?? 10 * 60_000;
  const names = await readdir(workDir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return [] as string[];
    throw err;
  });
  const removed: string[] = [];
  for (const name of names.filter((n) => n.startsWith(DIR_PREFIX))) {
    const dir = path.join(workDir, name);
    const owner = await readFile(path.join(dir, 'owner'), 'utf8').catch(() => null);
    if (owner !== null) {
      const [pid, started] = owner.trim().split(' ');
      if (await alive(Number(pid), started ?? '')) continue; // its owner is still at work
    } else {
      const st = await stat(dir).catch(() => null);
      if (!st || Date.now() - st.mtimeMs < olderThanMs) continue;
    }
    await killPostmaster(path.join(dir, 'data'));
    await rm(dir, { recursive: true, force: true });
    opts.log?.debug({ dir: name }, 'removed a stale scratch instance');
    removed.push(name);
  }
  return removed;
}

/** SIGQUIT (immediate shutdown) to the postmaster of `data`, if it still runs, then SIGKILL; waits for it to go. */
async function killPostmaster(data: string): Promise<void> {
  const pidText = await readFile(path.join(data, 'postmaster.pid'), 'utf8').catch(() => null);
  const pid = Number(pidText?.split('\n')[0]);
  if (!Number.isInteger(pid) || pid <= 0) return;
  // only a process that really is this data directory's postgres (pids are reused)
  const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
  if (!cmdline.split('\0').includes(data)) return;
  const running = () => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  process.kill(pid, 'SIGQUIT');
  for (let i = 0; i < 100 && running(); i++) await new Promise((r) => setTimeout(r, 100));
  if (running()) process.kill(pid, 'SIGKILL');
  for (let i = 0; i < 50 && running(); i++) await new Promise((r) => setTimeout(r, 100));
}

/** Whether the process of that pid and start time runs (without /proc, which gives no start time: whether the pid does). */
async function alive(pid: number, started: string): Promise<boolean> {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  if (started !== '') return (await processStart(pid)) === started;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** A process's start time (field 22 of /proc/<pid>/stat), '' when it does not exist: pid plus start time names a process for good. */
export async function processStart(pid: number): Promise<string> {
  if (!Number.isInteger(pid) || pid <= 0) return '';
  const text = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return rest[19] ?? '';
}
