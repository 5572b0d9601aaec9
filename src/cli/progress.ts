import cliProgress from 'cli-progress';
import { CliError, EXIT } from './exit.js';
import { humanBytes, humanSeconds } from './format.js';
import { sleep } from './http.js';

/** What one poll of the work shows. */
export interface Observation {
  status: string;
  bytesDone?: number | null;
  bytesTotal?: number | null;
}

interface Reporter {
  update(o: Observation): void;
  stop(): void;
}

/** Bytes per second over the last ~15 s of samples (null until two samples differ in time). */
function rateMeter() {
  const samples: [number, number][] = [];
  return (bytes: number): number | null => {
    const now = Date.now();
    samples.push([now, bytes]);
    while (samples.length > 2 && now - samples[0]![0] > 15_000) samples.shift();
    const [t0, b0] = samples[0]!;
    return now > t0 ? ((bytes - b0) * 1000) / (now - t0) : null;
  };
}

function figures(o: Observation, rate: number | null) {
  const done = o.bytesDone ?? 0;
  const total = o.bytesTotal ?? null;
  const pct = total ? Math.min(100, Math.floor((done * 100) / total)) : null;
  const eta = total && rate && rate > 0 ? Math.max(0, (total - done) / rate) : null;
  return { done, total, pct, rate, eta };
}

/** A bar redrawn in place on a terminal (stderr), with rate and ETA. */
function barReporter(label: string): Reporter {
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format: `${label} |{bar}| {pct} | {doneh} of {totalh} | {rateh} | ETA {etah} | {status}`,
      hideCursor: true,
      barsize: 30,
      fps: 5,
      clearOnComplete: false,
    },
    cliProgress.Presets.shades_classic,
  );
  const meter = rateMeter();
  let started = false;
  return {
    update(o) {
      const f = figures(o, meter(o.bytesDone ?? 0));
      const payload = {
        status: o.status,
        pct: f.pct === null ? '--%' : `${f.pct}%`,
        doneh: humanBytes(f.done),
        totalh: f.total === null ? '?' : humanBytes(f.total),
        rateh: f.rate === null ? '-/s' : `${humanBytes(Math.round(f.rate))}/s`,
        etah: f.eta === null ? '-' : humanSeconds(f.eta),
      };
      const total = Math.max(1, f.total ?? 0);
      if (!started) {
        bar.start(total, Math.min(f.done, total), payload);
        started = true;
      } else {
        bar.setTotal(total);
        bar.update(Math.min(f.done, total), payload);
      }
    },
    stop() {
      if (started) bar.stop();
    },
  };
}

/** Without a terminal: one plain line when waiting starts, then one per 10 s (cron logs). */
export function lineReporter(label: string, write: (line: string) => void, everyMs = 10_000): Reporter {
  const meter = rateMeter();
  let lastAt = 0;
  return {
    update(o) {
      const f = figures(o, meter(o.bytesDone ?? 0));
      const now = Date.now();
      if (lastAt !== 0 && now - lastAt < everyMs) return;
      lastAt = now;
      const parts = [`${new Date(now).toISOString().replace(/\.\d+Z$/, 'Z')} ${label}: ${o.status}`];
      if (o.bytesDone !== undefined) {
        parts.push(`${humanBytes(f.done)}${f.total === null ? '' : ` of ${humanBytes(f.total)}`}${f.pct === null ? '' : ` (${f.pct}%)`}`);
        if (f.rate !== null) parts.push(`${humanBytes(Math.round(f.rate))}/s`);
        if (f.eta !== null) parts.push(`ETA ${humanSeconds(f.eta)}`);
      }
      write(parts.join(', '));
    },
    stop() {},
  };
}

export interface WaitOptions<T> {
  /** e.g. "backup 1b2c…": the bar's or the line's label. */
  label: string;
  get: () => Promise<T>;
  observe: (v: T) => Observation;
  done: (v: T) => boolean;
  /** Epoch ms after which waiting stops with exit 3, or null. */
  deadline: number | null;
  /** What to say when the deadline passes, given the last state seen (the work goes on; how to look again). */
  onTimeout: (last: T) => string;
  write: (line: string) => void;
}

/**
 * Polls until `done`, showing progress: a bar on a terminal, plain lines otherwise. The deadline
 * (--timeout) ends the wait with exit 3; the work itself goes on in the service.
 */
export async function waitUntil<T>(opts: WaitOptions<T>): Promise<T> {
  const reporter = process.stderr.isTTY ? barReporter(opts.label) : lineReporter(opts.label, opts.write);
  // Short work ends within the first polls; long work is polled every 2 s (the service updates
  // progress at least that often).
  let interval = 200;
  try {
    for (;;) {
      const v = await opts.get();
      reporter.update(opts.observe(v));
      if (opts.done(v)) return v;
      if (opts.deadline !== null && Date.now() + interval > opts.deadline) {
        await sleep(Math.max(0, opts.deadline - Date.now()));
        const last = await opts.get();
        if (opts.done(last)) return last;
        throw new CliError(EXIT.timeout, opts.onTimeout(last));
      }
      await sleep(interval);
      interval = Math.min(2000, Math.round(interval * 1.5));
    }
  } finally {
    reporter.stop();
  }
}
