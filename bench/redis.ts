/**
 * Redis phase of the backup benchmark: our `redis` backup (the replication protocol straight
 * into the repository, src/components/redis-sync.ts) against `redis-cli --rdb -` to /dev/null (the
 * same snapshot over the same protocol, written nowhere: `--rdb /dev/null` fails its fsync), on a scratch redis-server filled with
 * ~sizeMB of mixed keys. Medians of 3 rounds each, interleaved (redis-cli first in odd rounds).
 * Target: ours >= 0.9 of redis-cli's throughput (ratio = redis-cli's time / ours).
 *
 * Where the time goes: the snapshot is serialised by the server's fork on one core, at the speed
 * that core gives it, so each run also prints the fork's time on a CPU, runnable but waiting for
 * one, and its life (/proc schedstat): what our backup's own CPU work took from the fork on a
 * machine that runs both.
 *
 * bench/backup.ts calls `redisBenchPhase` with `runOurs` backing the component up through the
 * service's own path. Run alone (`tsx bench/redis.ts`, BENCH_REDIS_MB, default 512) it backs up
 * into a sink that only counts, which measures the driver and not the repository.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { Redis } from 'ioredis';
import { startRedisServer } from '../test/helpers/redis-server.js';
import { redisDriver } from '../src/components/redis.js';
import { countingBackup, interleavedRounds, median, timeIt, verdict } from './support.js';

export interface RedisBenchComponent {
  name: string;
  type: 'redis';
  config: { url: string };
}

export interface RedisBenchOptions {
  sizeMB: number;
  log(line: string): void;
  note(line: string): void;
  /** One backup of the component by the service's code path: its wall time and logical bytes. */
  runOurs(component: RedisBenchComponent): Promise<{ ms: number; logical: number }>;
  rounds?: number;
}

const TARGET = 0.9;

/** ~sizeMB of data: 60% small strings (DEBUG POPULATE), 25% 1 MB values, 15% hashes, lists, sorted sets. */
async function fill(port: number, sizeMB: number): Promise<void> {
  const c = new Redis({ port, host: '127.0.0.1' });
  try {
    const small = Math.floor((sizeMB * 0.6 * 1e6) / 512);
    await c.call('DEBUG', 'POPULATE', String(small), 'small', '512');
    const big = Math.max(1, Math.floor(sizeMB * 0.25));
    for (let i = 0; i < big; i += 16) {
      const p = c.pipeline();
      for (let j = i; j < Math.min(big, i + 16); j++) p.set(`big:${j}`, randomBytes(1e6));
      await p.exec();
    }
    const rich = Math.max(1, Math.floor((sizeMB * 0.15 * 1e6) / (100 * 40)));
    for (let i = 0; i < rich; i += 100) {
      const p = c.pipeline();
      for (let j = i; j < Math.min(rich, i + 100); j++) {
        const fields = Array.from({ length: 100 }, (_, k) => [`f${k}`, randomBytes(12).toString('hex')]).flat();
        if (j % 3 === 0) p.hset(`h:${j}`, ...fields);
        else if (j % 3 === 1) p.rpush(`l:${j}`, ...fields);
        else p.zadd(`z:${j}`, ...fields.flatMap((f, k) => (k % 2 === 0 ? [String(k), f] : [])));
      }
      await p.exec();
    }
  } finally {
    c.disconnect();
  }
}

function redisCliRdb(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('redis-cli', ['-p', String(port), '--rdb', '-'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`redis-cli --rdb - exited ${code}: ${err.slice(-500)}`))));
  });
}

/**
 * Samples the snapshot fork of redis-server `pid` (its child) while `fn` runs: the fork's last
 * /proc schedstat (ns on a CPU, ns runnable waiting for one) and its lifetime as seen, so a run
 * tells whether the fork was short of CPU (waiting) or held up by its reader (neither: blocked on
 * the pipe to the server, whose socket the reader drains).
 */
async function forkTimes<T>(pid: number, fn: () => Promise<T>): Promise<{ value: T; onCpu: number; waiting: number; life: number }> {
  /** Per fork seen (a run may fork twice: ours backs up again, untimed; the timed fork is the first long one): its last sample and first and last sight. */
  const forks = new Map<number, { run: number; wait: number; first: number; last: number }>();
  let stop = false;
  const poll = (async () => {
    while (!stop) {
      try {
        for (const child of readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(' ').filter(Boolean).map(Number)) {
          const [run, wait] = readFileSync(`/proc/${child}/schedstat`, 'utf8').split(' ').map(Number);
          const now = performance.now();
          const f = forks.get(child) ?? { run: 0, wait: 0, first: now, last: now };
          forks.set(child, { run: run ?? 0, wait: wait ?? 0, first: f.first, last: now });
        }
      } catch {
        // it exited between the two reads
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  try {
    const value = await fn();
    // the first seen for longer than a moment: a fork of the run before may still be listed (a zombie) at the start
    const f = [...forks.values()].find((x) => x.last - x.first > 500) ?? { run: 0, wait: 0, first: 0, last: 0 };
    return { value, onCpu: f.run / 1e9, waiting: f.wait / 1e9, life: (f.last - f.first) / 1000 };
  } finally {
    stop = true;
    await poll;
  }
}

export async function redisBenchPhase(opts: RedisBenchOptions): Promise<{ ok: boolean; ratio: number }> {
  const rounds = opts.rounds ?? 3;
  const server = await startRedisServer({ args: ['--enable-debug-command', 'yes'] });
  try {
    const t = await timeIt(() => fill(server.port, opts.sizeMB));
    const c = new Redis({ port: server.port, host: '127.0.0.1' });
    const used = Number(/used_memory:(\d+)/.exec(await c.info('memory'))?.[1] ?? 0);
    c.disconnect();
    opts.log(`redis: filled a scratch redis-server with ~${opts.sizeMB} MB (used_memory ${(used / 1e6).toFixed(0)} MB) in ${(t / 1000).toFixed(1)} s`);
    const component: RedisBenchComponent = { name: 'bench-redis', type: 'redis', config: { url: server.url } };
    // The snapshot fork serialises on one core: per run, its time on a CPU, runnable but waiting
    // for one (what the rest of the machine, our backup included, took from it), and its life.
    const fork = { theirs: [] as string[], ours: [] as string[] };
    const sampled = async <T>(forks: string[], fn: () => Promise<T>): Promise<T> => {
      const f = await forkTimes(server.pid, fn);
      forks.push(`${f.onCpu.toFixed(2)}/${f.waiting.toFixed(2)}/${f.life.toFixed(2)}`);
      return f.value;
    };
    const r = await interleavedRounds(
      rounds,
      () => sampled(fork.theirs, () => redisCliRdb(server.port)),
      () => sampled(fork.ours, () => opts.runOurs(component)),
    );
    const { theirs, ours, ratio, logical } = r;
    const [mt, mo] = [median(theirs), median(ours)];
    const ok = ratio >= TARGET;
    const mbps = (ms: number) => (logical / 1e6 / (ms / 1000)).toFixed(1);
    opts.log(`redis: redis-cli --rdb - ${theirs.map((x) => (x / 1000).toFixed(2)).join(', ')} s; ours ${ours.map((x) => (x / 1000).toFixed(2)).join(', ')} s`);
    opts.log(`redis: the snapshot fork on a CPU / runnable waiting for one / its life, s: during redis-cli ${fork.theirs.join(', ')}; during ours ${fork.ours.join(', ')} (ours: the timed backup's)`);
    opts.note(
      `${verdict(ok)} redis backup of a ${(logical / 1e6).toFixed(0)} MB RDB: ours ${mbps(mo)} MB/s vs redis-cli --rdb - ${mbps(mt)} MB/s, ratio ${ratio.toFixed(2)} (target >= ${TARGET})`,
    );
    return { ok, ratio };
  } finally {
    await server.stop();
  }
}

// Alone: the driver into a sink that only counts.
if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const sizeMB = Number(process.env.BENCH_REDIS_MB ?? 512);
  await redisBenchPhase({
    sizeMB,
    log: (l) => console.log(l),
    note: (l) => console.log(l),
    runOurs: (component) => countingBackup(redisDriver, component.config),
  });
}
