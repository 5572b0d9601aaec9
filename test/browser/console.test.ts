import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AddressInfo } from 'node:net';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { AxeBuilder } from '@axe-core/playwright';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTenant, startStack, waitFor, waitForBackup, type Stack } from '../helpers/stack.js';

// The console end to end: a real stack with a worker, listening on a port, driven by Debian's
// chromium. The tests run in order on one signed-in page, as a person would use it.
const run = process.env.CONSOLE_BROWSER_TESTS ? describe : describe.skip;
const SHOTS = fileURLToPath(new URL('../../dist/screenshots/', import.meta.url));

let s: Stack;
let base: string;
let token: string;
let dir: string;
let clusterId: string;
let policyId: string;
let browser: Browser;
let context: BrowserContext;
let page: Page;
const requestedUrls: string[] = [];
const pageProblems: string[] = [];
let firstBackupId: string;
let clientSecret = 'unset-client-secret';

async function api(method: string, url: string, body?: unknown) {
  const r = await s.request(method, url, { token, ...(body !== undefined && { body }) });
  if (r.status >= 300) throw new Error(`${method} ${url}: ${r.status} ${r.text}`);
  return r.body;
}

async function newPage(): Promise<Page> {
  const p = await context.newPage();
  p.on('request', (r) => requestedUrls.push(r.url()));
  p.on('pageerror', (e) => pageProblems.push(`pageerror: ${e.message}`));
  p.on('console', (m) => {
    if (m.type() === 'error' && !/status of 4\d\d/.test(m.text())) pageProblems.push(`console: ${m.text()}`);
  });
  return p;
}

/** axe-core on the page as it is: no serious or critical violation. */
async function checkA11y(p: Page, name: string) {
  const result = await new AxeBuilder({ page: p as never }).analyze();
  const bad = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  expect(bad.map((v) => `${name}: ${v.id} (${v.impact}) ${v.help}: ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`)).toEqual([]);
}

async function shot(p: Page, name: string) {
  await p.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

// Expressions run in the page, as strings: this project's tsconfig has no DOM types.
/** The accessible text of the focused element: aria-label, else its <label>, else its text. */
const FOCUSED_LABEL = `(() => {
  const el = document.activeElement;
  if (!el || el === document.body) return '';
  const labelled = el.id ? document.querySelector('label[for="' + el.id + '"]')?.textContent : null;
  return (el.getAttribute('aria-label') || labelled || el.textContent || '').trim();
})()`;

/** Presses Tab until the focused element's accessible text matches, or fails after `max` presses. */
async function tabTo(p: Page, re: RegExp, max = 40): Promise<void> {
  for (let i = 0; i < max; i++) {
    await p.keyboard.press('Tab');
    const label = await p.evaluate<string>(FOCUSED_LABEL);
    if (re.test(label)) {
      // The focus is visible: :focus-visible draws an outline on what the keyboard reached.
      const outline = await p.evaluate<string>('getComputedStyle(document.activeElement).outlineStyle');
      expect(outline, `focus outline on "${label}"`).not.toBe('none');
      return;
    }
  }
  throw new Error(`Tab never reached ${re}`);
}

run('the console in chromium', () => {
  beforeAll(async () => {
    await mkdir(SHOTS, { recursive: true });
    // Webhooks to this machine allowed, so the console can create one (the receiver need not exist).
    s = await startStack({ env: { WEBHOOK_ALLOWED_HOSTS: '127.0.0.1', WEBHOOK_ALLOW_HTTP: 'true' } });
    const t = await createTenant(s);
    token = t.adminToken;
    dir = t.dir;
    await mkdir(path.join(dir, 'site', 'sub'), { recursive: true });
    await writeFile(path.join(dir, 'site', 'index.html'), 'hello from the first backup');
    await writeFile(path.join(dir, 'site', 'sub', 'notes.txt'), 'notes');
    // Enough incompressible data that a backup runs long enough to be watched.
    await mkdir(path.join(dir, 'bulk'), { recursive: true });
    for (let i = 0; i < 6; i++) await writeFile(path.join(dir, 'bulk', `blob-${i}.bin`), randomBytes(4 << 20));
    const policy = await api('POST', '/v1/policies', { name: 'shop policy', schedule: [{ interval: '1d', count: 7 }], max_backups: 10, manual_count: 5, manual_rate_limit: null });
    policyId = policy.id;
    const cluster = await api('POST', '/v1/clusters', {
      name: 'shop',
      policy_id: policyId,
      components: [
        { name: 'site', type: 'directory', config: { path: 'site' } },
        { name: 'bulk', type: 'directory', config: { path: 'bulk' } },
      ],
    });
    clusterId = cluster.id;
    // Another cluster, offered as a restore target.
    await mkdir(path.join(dir, 'site-copy'), { recursive: true });
    await api('POST', '/v1/clusters', { name: 'shop-staging', environment: 'staging', components: [{ name: 'site', type: 'directory', config: { path: 'site-copy' } }] });
    await s.app.listen({ port: 0, host: '127.0.0.1' });
    base = `http://127.0.0.1:${(s.app.server.address() as AddressInfo).port}`;
    browser = await chromium.launch({
      executablePath: '/usr/bin/chromium',
      headless: true,
      args: ['--no-sandbox', '--headless', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1280, height: 900 } });
    // A failing step fails in seconds, not after playwright's default 30 s per wait.
    context.setDefaultTimeout(15_000);
    page = await newPage();
  });
  afterAll(async () => {
    await context?.close();
    await browser?.close();
    await s?.close();
  });

  it('signs in with an API key (a wrong one is refused), kept in sessionStorage only', async () => {
    await page.goto(`${base}/console/`);
    await expect.poll(() => page.getByRole('heading', { level: 1 }).textContent()).toBe('Sign in');
    await checkA11y(page, 'sign-in');
    await page.getByLabel('API key', { exact: true }).fill('bk_not_a_real_key');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').waitFor();
    await shot(page, '01-sign-in-refused');
    expect(await page.evaluate<number>('sessionStorage.length')).toBe(0);

    await page.getByLabel('API key', { exact: true }).fill(token);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { level: 1, name: 'Clusters' }).waitFor();
    expect((await page.evaluate<string[]>('Object.values(sessionStorage)')).map((v) => JSON.parse(v))).toEqual([{ kind: 'key', token }]);
    expect(await page.evaluate<string[]>('Object.values(localStorage)')).toEqual([]);
    expect(await page.evaluate<string>('document.cookie')).toBe('');
    await page.getByRole('link', { name: 'shop', exact: true }).waitFor();
    await checkA11y(page, 'clusters');
    await shot(page, '02-clusters');
  });

  it('creates a manual backup and shows its progress until it completes', async () => {
    await page.getByRole('link', { name: 'shop', exact: true }).click();
    await page.getByRole('heading', { level: 1, name: 'Cluster shop' }).waitFor();
    await page.getByRole('button', { name: 'Back up now' }).click();
    const row = page.locator('table.backups tbody tr').first();
    const seen = new Set<string>();
    let sawProgressBar = false;
    await waitFor(
      async () => {
        const status = (await row.locator('.status').first().textContent().catch(() => null)) ?? '';
        if (status) seen.add(status);
        if (await row.locator('progress').count()) sawProgressBar = true;
        return status === 'completed';
      },
      60_000,
      'the backup to show completed',
    );
    // The page polled: it showed the backup before it ended, then completed, without a reload.
    expect([...seen].some((x) => x === 'queued' || x === 'running'), `statuses seen: ${[...seen]}`).toBe(true);
    expect(sawProgressBar).toBe(true);
    firstBackupId = (await row.getAttribute('data-backup'))!;
    const b = await api('GET', `/v1/clusters/${clusterId}/backups/${firstBackupId}`);
    expect(b.status).toBe('completed');
    await expect.poll(() => row.locator('td').nth(4).textContent()).toMatch(/MiB/);
    await checkA11y(page, 'cluster backups');
    await shot(page, '03-cluster-backups');
  });

  it('browses the backup’s files and downloads one component', async () => {
    await page.getByRole('button', { name: `Files of backup ${firstBackupId.slice(0, 8)}` }).click();
    const files = page.locator('table.file-list');
    await files.getByText('index.html').waitFor();
    await files.getByRole('button', { name: 'sub/' }).click();
    await files.getByText('notes.txt').waitFor();
    await checkA11y(page, 'files');
    await shot(page, '04-files');
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download site' }).click()]);
    expect(download.suggestedFilename()).toMatch(/\.tar$/);
    const bytes = await readFile((await download.path())!);
    // A tar holding the component's files, byte for byte.
    expect(bytes.includes(Buffer.from('index.html'))).toBe(true);
    expect(bytes.includes(Buffer.from('hello from the first backup'))).toBe(true);
    expect(bytes.includes(Buffer.from('sub/notes.txt'))).toBe(true);
    await page.getByText(/Downloaded .*\.tar/).waitFor();

    // Verify: the row follows the verification to its result.
    await page.getByRole('button', { name: `Verify backup ${firstBackupId.slice(0, 8)}` }).click();
    await page.locator(`tr[data-backup="${firstBackupId}"] td`).nth(6).getByText('passed').waitFor({ timeout: 30_000 });
    expect((await api('GET', `/v1/clusters/${clusterId}/backups/${firstBackupId}`)).verification.status).toBe('passed');
  });

  it('restores in place only after the cluster name is typed; a wrong name does nothing', async () => {
    await writeFile(path.join(dir, 'site', 'index.html'), 'changed after the backup');
    await page.getByRole('link', { name: `Restore backup ${firstBackupId.slice(0, 8)}` }).click();
    await page.getByRole('heading', { level: 1, name: `Restore backup ${firstBackupId.slice(0, 8)}` }).waitFor();
    await checkA11y(page, 'restore');
    const button = page.getByRole('button', { name: 'Restore into shop' });
    await page.getByLabel(/Type the cluster name/).fill('shopp');
    // Shown disabled (aria-disabled) but still clickable: the click must do nothing.
    await button.click({ force: true });
    await page.getByText('Type shop exactly to restore.').waitFor();
    await page.getByLabel(/Type the cluster name/).fill('Shop');
    await button.press('Enter');
    await new Promise((r) => setTimeout(r, 500));
    expect((await api('GET', `/v1/clusters/${clusterId}/restores`)).items).toEqual([]);
    expect(await readFile(path.join(dir, 'site', 'index.html'), 'utf8')).toBe('changed after the backup');
    await shot(page, '05-restore-wrong-name');

    // The subset: only the small component.
    await page.getByLabel('bulk').uncheck();
    await page.getByLabel(/Type the cluster name/).fill('shop');
    await button.click();
    const panel = page.locator('section[aria-labelledby="restore-status-title"]');
    await panel.getByText('completed').waitFor({ timeout: 30_000 });
    const restores = (await api('GET', `/v1/clusters/${clusterId}/restores`)).items;
    expect(restores).toHaveLength(1);
    expect(restores[0]).toMatchObject({ status: 'completed', cluster_id: clusterId, components: ['site'] });
    expect(await readFile(path.join(dir, 'site', 'index.html'), 'utf8')).toBe('hello from the first backup');
    await shot(page, '06-restore-done');

    // Into another cluster: the name to type becomes that cluster's.
    await page.getByLabel('Target cluster').selectOption({ label: 'shop-staging' });
    await page.getByLabel('Type the cluster name (shop-staging) to confirm').fill('shop');
    const into = page.getByRole('button', { name: 'Restore into shop-staging' });
    await into.click({ force: true });
    await page.getByText('Type shop-staging exactly to restore.').waitFor();
    await page.getByLabel('Type the cluster name (shop-staging) to confirm').fill('shop-staging');
    await into.click();
    await waitFor(async () => (await readFile(path.join(dir, 'site-copy', 'index.html'), 'utf8').catch(() => null)) === 'hello from the first backup', 30_000, 'the restore into shop-staging');
    await panel.getByText('completed').waitFor({ timeout: 30_000 });
  });

  it('shows the retention timeline, coloured by the rule keeping each backup', async () => {
    for (let i = 0; i < 3; i++) {
      const b = await api('POST', `/v1/clusters/${clusterId}/backups`, {});
      await waitForBackup(s, token, clusterId, b.id);
    }
    await page.goto(`${base}/console/clusters/${clusterId}/retention`);
    await page.getByRole('heading', { level: 1, name: 'Retention of shop' }).waitFor();
    const marks = page.locator('svg.timeline-svg .mark');
    await expect.poll(() => marks.count()).toBe(4);
    expect(await page.locator('svg.timeline-svg circle.rule-manual').count()).toBeGreaterThan(0);
    await page.getByText('4 kept, 0 deletions pending.').waitFor();
    await checkA11y(page, 'retention');
    await shot(page, '07-retention');
  });

  it('edits the policy: a bad interval shows the API’s message; the preview lists what would be deleted before anything is saved', async () => {
    await page.getByRole('navigation', { name: 'Cluster' }).getByRole('link', { name: 'Policy' }).click();
    await page.getByRole('heading', { level: 1, name: 'Policy of shop' }).waitFor();
    await page.getByText('Nothing kept today would be deleted.').waitFor();
    await checkA11y(page, 'policy');

    // The API's own message for that interval, from POST /v1/policies.
    const refused = await s.request('POST', '/v1/policies', { token, body: { name: 'x', schedule: [{ interval: '5x', count: 7 }] } });
    expect(refused.status).toBe(422);
    const apiMessage = refused.body.errors[0].message as string;
    await page.getByLabel('Interval 1', { exact: true }).fill('5x');
    const shown = page.locator('#err-schedule-0-interval');
    await shown.waitFor();
    expect(await shown.textContent()).toBe(apiMessage);
    expect(await page.getByLabel('Interval 1', { exact: true }).getAttribute('aria-invalid')).toBe('true');
    await checkA11y(page, 'policy with an error');
    await shot(page, '08-policy-bad-interval');
    // Save is refused while the draft is invalid: nothing reaches the API.
    await page.getByRole('button', { name: 'Save policy' }).click({ force: true });
    await page.getByLabel('Interval 1', { exact: true }).fill('1d');
    await shown.waitFor({ state: 'detached' });

    const manual = await s.request('GET', `/v1/clusters/${clusterId}/backups?trigger=manual&limit=10`, { token });
    const oldestFirst = manual.body.items.map((b: { id: string }) => b.id).reverse() as string[];
    await page.getByLabel(/manual_count/).fill('2');
    const list = page.locator('ul.would-delete li');
    await expect.poll(() => list.count()).toBe(2);
    const listed = await list.locator('code').allTextContents();
    expect(listed.sort()).toEqual(oldestFirst.slice(0, 2).map((id) => id.slice(0, 8)).sort());
    await page.getByText('2 backups kept today would be deleted:').waitFor();
    expect(await page.locator('#preview-timeline-title').count()).toBe(1);
    await checkA11y(page, 'policy preview');
    await shot(page, '09-policy-preview');
    // Nothing saved yet: the policy and every backup as they were.
    expect((await api('GET', `/v1/policies/${policyId}`)).manual_count).toBe(5);
    expect((await api('GET', `/v1/clusters/${clusterId}/backups`)).items.every((b: { status: string }) => b.status === 'completed')).toBe(true);

    await page.getByRole('button', { name: 'Save policy' }).click();
    await page.getByText(/^Saved /).waitFor();
    expect((await api('GET', `/v1/policies/${policyId}`)).manual_count).toBe(2);
    await waitFor(
      async () => {
        const items = (await api('GET', `/v1/clusters/${clusterId}/backups`)).items as { id: string }[];
        return items.length === 2 && items.every((b) => !oldestFirst.slice(0, 2).includes(b.id));
      },
      30_000,
      'the two oldest backups to be pruned',
    );
  });

  it('shows events, the audit log, webhooks and usage', async () => {
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Events' }).click();
    await page.getByRole('heading', { level: 1, name: 'Events' }).waitFor();
    await page.locator('table.events').getByText('backup.completed').first().waitFor();
    await page.locator('table.events').getByText('restore.completed').first().waitFor();
    await page.getByLabel('Type').selectOption('backup.deleted');
    await page.locator('table.events').getByText('backup.deleted').first().waitFor();
    await expect.poll(() => page.locator('table.events').getByText('backup.completed').count()).toBe(0);
    await checkA11y(page, 'events');
    await shot(page, '10-events');

    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Audit' }).click();
    await page.getByRole('heading', { level: 1, name: 'Audit log' }).waitFor();
    await page.getByRole('cell', { name: 'policy.update' }).first().waitFor();
    await page.getByRole('cell', { name: 'restore.create' }).first().waitFor();
    await checkA11y(page, 'audit');
    await shot(page, '11-audit');

    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Webhooks' }).click();
    await page.getByRole('heading', { level: 1, name: 'Webhooks' }).waitFor();
    await page.getByText('No webhooks.').waitFor();
    // A URL the API refuses: the console shows the API's reason.
    await page.getByLabel('URL (https)').fill('ftp://127.0.0.1/hook');
    await page.getByRole('button', { name: 'Create webhook' }).click();
    await page.getByRole('alert').waitFor();
    await page.getByLabel('URL (https)').fill('http://127.0.0.1:9/hook');
    await page.getByLabel('Description (optional)').fill('console test');
    await page.getByLabel('restore.completed').check();
    await page.getByRole('button', { name: 'Create webhook' }).click();
    await page.getByText(/Signing secret, shown once: whsec_/).waitFor();
    const hooks = (await api('GET', '/v1/webhooks')).items;
    expect(hooks).toHaveLength(1);
    expect(hooks[0]).toMatchObject({ url: 'http://127.0.0.1:9/hook', description: 'console test' });
    expect([...hooks[0].events].sort()).toEqual(['backup.completed', 'backup.failed', 'restore.completed']);
    await page.getByRole('cell', { name: /^http:\/\/127\.0\.0\.1:9\/hook/ }).first().waitFor();
    await checkA11y(page, 'webhooks');
    await shot(page, '12-webhooks');
    await page.getByRole('button', { name: 'Delete webhook http://127.0.0.1:9/hook' }).click();
    await page.getByRole('button', { name: 'Confirm delete of http://127.0.0.1:9/hook' }).click();
    await page.getByText('No webhooks.').waitFor();
    expect((await api('GET', '/v1/webhooks')).items).toEqual([]);

    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Usage' }).click();
    await page.getByRole('heading', { level: 1, name: 'Usage' }).waitFor();
    await page.locator('svg.chart-svg polyline.series-stored').waitFor();
    const usage = await api('GET', '/v1/usage');
    expect(usage.stored_bytes).toBeGreaterThan(0);
    await page.getByRole('cell', { name: 'shop', exact: true }).waitFor();
    await checkA11y(page, 'usage');
    await shot(page, '13-usage');
  });

  it('runs the main flow from the keyboard alone: sign in, back up, restore', async () => {
    // A new tab: sessionStorage is per tab, so this one starts signed out.
    const p = await newPage();
    await p.goto(`${base}/console/`);
    await p.getByRole('heading', { level: 1, name: 'Sign in' }).waitFor();
    await tabTo(p, /^API key$/);
    await p.keyboard.type(token);
    await p.keyboard.press('Enter');
    await p.getByRole('heading', { level: 1, name: 'Clusters' }).waitFor();
    await tabTo(p, /^shop$/);
    await p.keyboard.press('Enter');
    await p.getByRole('heading', { level: 1, name: 'Cluster shop' }).waitFor();
    const before = new Set(((await api('GET', `/v1/clusters/${clusterId}/backups`)).items as { id: string }[]).map((b) => b.id));
    await tabTo(p, /Back up now/);
    await p.keyboard.press('Enter');
    const newest = await waitFor(
      async () => {
        const items = (await api('GET', `/v1/clusters/${clusterId}/backups`)).items as { id: string }[];
        return items.find((b) => !before.has(b.id))?.id ?? null;
      },
      10_000,
      'the backup to be created',
    );
    await p.locator(`tr[data-backup="${newest}"] .status-completed`).waitFor({ timeout: 60_000 });
    await tabTo(p, new RegExp(`Restore backup ${newest.slice(0, 8)}`));
    await p.keyboard.press('Enter');
    await p.getByRole('heading', { level: 1, name: `Restore backup ${newest.slice(0, 8)}` }).waitFor();
    await tabTo(p, /Type the cluster name/);
    await p.keyboard.type('shop');
    await tabTo(p, /Restore into shop/);
    await p.keyboard.press('Enter');
    await p.locator('section[aria-labelledby="restore-status-title"]').getByText('completed').waitFor({ timeout: 30_000 }).catch(async (err) => {
      throw new Error(`${(err as Error).message}\n${await p.locator('main').innerText()}`);
    });
    await shot(p, '14-keyboard-restore');

    // Back to the cluster and delete that backup, confirming, all by keyboard.
    await tabTo(p, /^shop$/);
    await p.keyboard.press('Enter');
    await p.getByRole('heading', { level: 1, name: 'Cluster shop' }).waitFor();
    await p.locator(`tr[data-backup="${newest}"]`).waitFor();
    await tabTo(p, new RegExp(`^Delete backup ${newest.slice(0, 8)}$`));
    await p.keyboard.press('Enter');
    await tabTo(p, new RegExp(`^Confirm delete of ${newest.slice(0, 8)}$`), 3);
    await p.keyboard.press('Enter');
    await waitFor(
      async () => {
        const r = await s.request('GET', `/v1/clusters/${clusterId}/backups/${newest}`, { token });
        return r.status === 404 || r.body?.status === 'deleting';
      },
      20_000,
      'the backup to be deleted',
    );
    await p.close();
  });

  it('signs in with an API client (OAuth2 client credentials); a viewer is refused a backup with the API’s reason', async () => {
    const created = await api('POST', '/v1/api-clients', { name: 'console viewer', role: 'viewer' });
    clientSecret = created.client_secret;
    const p = await newPage();
    await p.goto(`${base}/console/`);
    await p.getByLabel('an API client (OAuth2 client credentials)').check();
    await p.getByLabel('Client id').fill(created.client_id);
    await p.getByLabel('Client secret').fill('not-the-secret');
    await p.getByRole('button', { name: 'Sign in' }).click();
    // The token endpoint's 401 (with WWW-Authenticate: Basic) comes back to the page as a message,
    // not as the browser's login dialog (the console's requests omit ambient credentials).
    await p.getByRole('alert').waitFor();
    expect(await p.getByRole('alert').textContent()).toContain('unknown client or wrong secret');
    await p.getByLabel('Client secret').fill(clientSecret);
    await p.getByRole('button', { name: 'Sign in' }).click();
    await p.getByRole('heading', { level: 1, name: 'Clusters' }).waitFor();
    const stored = (await p.evaluate<string[]>('Object.values(sessionStorage)')).map((v) => JSON.parse(v));
    expect(stored).toEqual([expect.objectContaining({ kind: 'client', clientId: created.client_id, accessToken: expect.any(String) })]);
    await p.getByRole('link', { name: 'shop', exact: true }).click();
    await p.getByRole('button', { name: 'Back up now' }).click();
    await p.getByRole('alert').waitFor();
    expect(await p.getByRole('alert').textContent()).toMatch(/role|operator|forbidden|not allow/i);
    await checkA11y(p, 'sign-in with an API client');
    await shot(p, '15-api-client-viewer');
    await p.close();
  });

  it('never put the key in a URL or a log line, and the page met its CSP', async () => {
    expect(requestedUrls.length).toBeGreaterThan(20);
    expect(requestedUrls.filter((u) => u.includes(token) || u.includes(clientSecret))).toEqual([]);
    expect(s.logs()).not.toContain(token);
    expect(s.logs()).not.toContain(clientSecret);
    expect(pageProblems.filter((m) => /Content Security Policy|Refused to/i.test(m))).toEqual([]);
    expect(pageProblems.filter((m) => m.startsWith('pageerror'))).toEqual([]);
  });
});
