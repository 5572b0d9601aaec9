import { afterEach, describe, expect, it, vi } from 'vitest';
import { resolveSettings } from '../src/cli/config.js';
import { EXIT } from '../src/cli/exit.js';
import { parseDuration } from '../src/cli/format.js';
import { retryingFetch, tokenSource } from '../src/cli/http.js';
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

describe('API client credentials', () => {
  it('asks POST /oauth/token once (HTTP Basic, client_credentials) and again shortly before the token expires', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(new Date('2026-12-02T10:00:00Z'));
    const asked: { auth: string | null; type: string | null; body: string; url: string }[] = [];
    const fetcher = async (req: Request) => {
      asked.push({ auth: req.headers.get('authorization'), type: req.headers.get('content-type'), body: await req.text(), url: req.url });
      return Response.json({ access_token: `jwt-${asked.length}`, token_type: 'Bearer', expires_in: 300, scope: 'operator' });
    };
    const token = tokenSource('https://svc.test', { kind: 'client', clientId: 'cli:ent', clientSecret: 's3cr=t' }, fetcher);
    expect(await token()).toBe('jwt-1');
    vi.setSystemTime(new Date('2026-12-02T10:04:00Z'));
    expect(await token()).toBe('jwt-1');
    vi.setSystemTime(new Date('2026-12-02T10:04:40Z')); // within 30 s of expiry
    expect(await token()).toBe('jwt-2');
    expect(asked).toHaveLength(2);
    expect(asked[0]).toEqual({
      url: 'https://svc.test/oauth/token',
      // RFC 6749 2.3.1: id and secret form-encoded, then Basic.
      auth: `Basic ${Buffer.from('cli%3Aent:s3cr%3Dt').toString('base64')}`,
      type: 'application/x-www-form-urlencoded',
      body: 'grant_type=client_credentials',
    });
  });

  it('a refused client is exit 5 with the RFC 6749 error', async () => {
    const fetcher = async () => Response.json({ error: 'invalid_client', error_description: 'unknown client or wrong secret' }, { status: 401 });
    const token = tokenSource('https://svc.test', { kind: 'client', clientId: 'a', clientSecret: 'b' }, fetcher);
    await expect(token()).rejects.toMatchObject({ code: EXIT.auth, message: expect.stringMatching(/401 invalid_client: unknown client or wrong secret/) });
  });
});
