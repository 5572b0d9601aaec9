import { afterEach, describe, expect, it, vi } from 'vitest';
import { resolveSettings } from '../src/cli/config.js';
import { EXIT } from '../src/cli/exit.js';
import { parseDuration } from '../src/cli/format.js';
import { retryingFetch } from '../src/cli/http.js';
import { lineReporter } from '../src/cli/progress.js';

/* The parts of backupctl whose timing or failure the end-to-end tests cannot reach cheaply. */

afterEach(() => {
  vi.useRealTimers();
});

describe('plain progress (no TTY)', () => {
  it('prints one line when waiting starts, then at most one per 10 s, with rate and ETA', () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(new Date('2026-12-02T10:00:00Z'));
    const lines: string[] = [];
    const r = lineReporter('backup 1234abcd', (l) => lines.push(l));
    r.update({ status: 'queued', bytesDone: 0, bytesTotal: null });
    for (let s = 1; s <= 25; s++) {
      vi.setSystemTime(new Date(Date.parse('2026-12-02T10:00:00Z') + s * 1000));
      r.update({ status: 'running', bytesDone: s * 1024 * 1024, bytesTotal: 50 * 1024 * 1024 });
    }
    expect(lines).toEqual([
      '2026-12-02T10:00:00Z backup 1234abcd: queued, 0 B',
      expect.stringMatching(/^2026-12-02T10:00:10Z backup 1234abcd: running, 10 MiB of 50 MiB \(20%\), 1\.\d MiB\/s, ETA \d+ s$/),
      expect.stringMatching(/^2026-12-02T10:00:20Z backup 1234abcd: running, 20 MiB of 50 MiB \(40%\), 1\.0 MiB\/s, ETA 30 s$/),
    ]);
  });
});

describe('retries', () => {
  it('sends the same request again after a 5xx or a connection error, Idempotency-Key and body included', async () => {
    const seen: { key: string | null; body: string }[] = [];
    const answers: (() => Response)[] = [
      () => new Response('{}', { status: 503 }),
      () => {
        throw new TypeError('fetch failed', { cause: Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }) });
      },
      () => new Response('{"ok":true}', { status: 202 }),
    ];
    const base = (async (req: Request) => {
      seen.push({ key: req.headers.get('idempotency-key'), body: await req.text() });
      return answers[seen.length - 1]!();
    }) as typeof fetch;
    const notes: string[] = [];
    const f = retryingFetch({ attempts: 4, firstDelayMs: 1, headersTimeoutMs: 1000 }, (l) => notes.push(l), base);
    const res = await f(new Request('http://svc.test/v1/clusters/c/backups', { method: 'POST', headers: { 'idempotency-key': 'k-1' }, body: '{}' }));
    expect(res.status).toBe(202);
    expect(seen).toEqual([
      { key: 'k-1', body: '{}' },
      { key: 'k-1', body: '{}' },
      { key: 'k-1', body: '{}' },
    ]);
    expect(notes).toEqual([expect.stringMatching(/answered 503; trying again/), expect.stringMatching(/ECONNRESET; trying again/)]);
  });

  it('gives the last 5xx back after the last attempt (the caller exits 6); 4xx are not retried', async () => {
    let calls = 0;
    const base = (async () => {
      calls++;
      return new Response('{}', { status: calls <= 10 ? 502 : 200 });
    }) as unknown as typeof fetch;
    const f = retryingFetch({ attempts: 3, firstDelayMs: 1, headersTimeoutMs: 1000 }, () => {}, base);
    expect((await f(new Request('http://svc.test/v1/clusters'))).status).toBe(502);
    expect(calls).toBe(3);
    let asked = 0;
    const g = retryingFetch({ attempts: 3, firstDelayMs: 1, headersTimeoutMs: 1000 }, () => {}, (async () => (asked++, new Response('{}', { status: 409 }))) as unknown as typeof fetch);
    expect((await g(new Request('http://svc.test/v1/clusters'))).status).toBe(409);
    expect(asked).toBe(1);
  });
});

describe('configuration', () => {
  it('flags override the environment; a credential given by flag wins as a whole', () => {
    const env = { BACKUP_URL: 'https://env.example/', BACKUP_TOKEN: 'env-token', BACKUP_CLIENT_ID: 'cid', BACKUP_CLIENT_SECRET: 'csecret' };
    expect(resolveSettings({}, env)).toEqual({ url: 'https://env.example', credentials: { kind: 'token', token: 'env-token' }, json: false });
    expect(resolveSettings({ url: 'http://flag.example:8080', token: 'flag-token' }, env).url).toBe('http://flag.example:8080');
    expect(resolveSettings({ token: 'flag-token' }, env).credentials).toEqual({ kind: 'token', token: 'flag-token' });
    expect(resolveSettings({ clientSecret: 'other' }, env).credentials).toEqual({ kind: 'client', clientId: 'cid', clientSecret: 'other' });
    expect(resolveSettings({}, { BACKUP_URL: 'https://x', BACKUP_CLIENT_ID: 'a', BACKUP_CLIENT_SECRET: 'b' }).credentials.kind).toBe('client');
    for (const [flags, e, message] of [
      [{}, { BACKUP_TOKEN: 't' }, /BACKUP_URL/],
      [{}, { BACKUP_URL: 'ftp://x', BACKUP_TOKEN: 't' }, /http:\/\/ or https:\/\//],
      [{}, { BACKUP_URL: 'not a url', BACKUP_TOKEN: 't' }, /BACKUP_URL is not a URL/],
      [{}, { BACKUP_URL: 'https://x' }, /BACKUP_TOKEN/],
      [{}, { BACKUP_URL: 'https://x', BACKUP_CLIENT_ID: 'a' }, /BACKUP_CLIENT_SECRET/],
    ] as const) {
      expect(() => resolveSettings(flags, e)).toThrow(expect.objectContaining({ code: EXIT.usage, message: expect.stringMatching(message) }));
    }
  });

  it('parses durations for --timeout', () => {
    expect([parseDuration('90'), parseDuration('90s'), parseDuration('5m'), parseDuration('1.5h'), parseDuration('250ms')]).toEqual([90_000, 90_000, 300_000, 5_400_000, 250]);
    for (const bad of ['', 'soon', '-1s', '0', '5 parsecs']) expect(() => parseDuration(bad)).toThrow(/duration/);
  });
});
