import type { SecretBox } from '../../crypto/secrets.js';
import type { FieldProblem } from '../../errors.js';
import type { UrlGuard } from '../../net/url-guard.js';
import { createWebhookSender, type SendResult } from '../webhooks/sender.js';
import { generateWebhookSecret } from '../webhooks/webhooks.service.js';

/**
 * A cluster's hooks (SPEC section 11): URLs the service calls around a consistent backup
 * (pre_backup pauses the tenant's writers, post_backup resumes them) and around a restore
 * (pre_restore stops the components, post_restore starts them again, as SAP's procedure does).
 * A call is a POST signed like a webhook (Standard Webhooks headers, the cluster's hooks secret),
 * body `{hook, cluster_id, backup_id | restore_id, live}`, through the same SSRF guard as
 * webhooks (checked at save and before every call, connecting only to the checked address, no
 * redirects). A 2xx within `timeout_s` is success; a 2xx after it is a failure.
 */
export const HOOK_NAMES = ['pre_backup', 'post_backup', 'pre_restore', 'post_restore'] as const;
export type HookName = (typeof HOOK_NAMES)[number];

export interface HookConfig {
  url: string;
  timeout_s: number;
}
export type ClusterHooks = Partial<Record<HookName, HookConfig>>;

export const MIN_TIMEOUT_S = 1;
export const MAX_TIMEOUT_S = 300;

/** The hooks as stored (a JSON column): only well-formed entries count. */
export function hooksOf(stored: unknown): ClusterHooks {
  const out: ClusterHooks = {};
  if (!stored || typeof stored !== 'object') return out;
  for (const name of HOOK_NAMES) {
    const h = (stored as Record<string, unknown>)[name] as Partial<HookConfig> | undefined;
    if (h && typeof h.url === 'string' && typeof h.timeout_s === 'number') out[name] = { url: h.url, timeout_s: h.timeout_s };
  }
  return out;
}

/** As the API shows them: every hook named, null when unset. */
export function presentHooks(stored: unknown): Record<HookName, HookConfig | null> {
  const hooks = hooksOf(stored);
  return Object.fromEntries(HOOK_NAMES.map((n) => [n, hooks[n] ?? null])) as Record<HookName, HookConfig | null>;
}

/** A change of hooks applied: each name given replaces that hook (null removes it), the others stay. */
export function applyHooks(current: unknown, patch: Partial<Record<HookName, HookConfig | null>>): ClusterHooks {
  const hooks = hooksOf(current);
  for (const name of HOOK_NAMES) {
    const h = patch[name];
    if (h === null) delete hooks[name];
    else if (h !== undefined) hooks[name] = { url: h.url, timeout_s: h.timeout_s };
  }
  return hooks;
}

/**
 * Every problem of the hooks a change gives, with body paths (timeout_s out of 1..300, a URL the
 * SSRF guard refuses), so that one 422 lists them all. Resolves names: call it outside transactions.
 */
export async function checkHooks(patch: Partial<Record<HookName, HookConfig | null>>, guard: UrlGuard): Promise<FieldProblem[]> {
  const errors: FieldProblem[] = [];
  for (const name of HOOK_NAMES) {
    const h = patch[name];
    if (!h) continue;
    const path = `body.hooks.${name}`;
    if (!Number.isInteger(h.timeout_s) || h.timeout_s < MIN_TIMEOUT_S || h.timeout_s > MAX_TIMEOUT_S) errors.push({ path: `${path}.timeout_s`, message: `must be an integer number of seconds ${MIN_TIMEOUT_S}-${MAX_TIMEOUT_S}` });
    const verdict = await guard.check(h.url);
    if (!verdict.ok) errors.push({ path: `${path}.url`, message: verdict.problem });
  }
  return errors;
}

/** The hooks that come in pairs: a pause started by the first is ended by the second. */
export const HOOK_PAIRS: readonly (readonly [HookName, HookName])[] = [
  ['pre_backup', 'post_backup'],
  ['pre_restore', 'post_restore'],
];

/**
 * A pre hook without its post hook would pause the tenant's writers with nothing to resume them,
 * and a post hook without its pre hook is never called: each pair is set together or not at all.
 * Checks the hooks a change would leave (`applyHooks`), naming the missing one.
 */
export function unpairedHooks(hooks: ClusterHooks): FieldProblem[] {
  const errors: FieldProblem[] = [];
  for (const [pre, post] of HOOK_PAIRS) {
    if (hooks[pre] && !hooks[post]) errors.push({ path: `body.hooks.${post}`, message: `required with ${pre}: the ${post} hook ends the pause that ${pre} starts` });
    if (hooks[post] && !hooks[pre]) errors.push({ path: `body.hooks.${pre}`, message: `required with ${post}: ${post} is called only to end a pause that ${pre} started` });
  }
  return errors;
}

/** The hooks secret a cluster gets with its first hook (shown once), encrypted for the row. */
export function newHooksSecret(box: SecretBox): { secret: string; stored: string } {
  const secret = generateWebhookSecret();
  return { secret, stored: box.encrypt(secret) };
}

export interface HookTarget {
  id: string;
  hooks: unknown;
  hooksSecretEnc: string | null;
}

/** What a call says besides the hook's name and the cluster: the job, and whether the backup is live. */
export type HookCall = { live: boolean } & ({ backup_id: string } | { restore_id: string });

export interface HookCaller {
  /**
   * Calls the cluster's hook `name`; null when the cluster has no such hook. `pause` names the
   * pause the call belongs to (its start in ms): the webhook-id is `<job>.<hook>.<pause>`, the
   * same when the call is made again for the same pause (the reconciler's), new for a new pause.
   */
  call(cluster: HookTarget, name: HookName, body: HookCall, pause: string): Promise<SendResult | null>;
}

export function createHookCaller(deps: { urlGuard: UrlGuard; box: SecretBox; now: () => Date }): HookCaller {
  return {
    async call(cluster, name, rest, pause) {
      const hook = hooksOf(cluster.hooks)[name];
      if (!hook) return null;
      if (!cluster.hooksSecretEnc) return { outcome: 'failed', statusCode: null, durationMs: 0, error: 'the cluster has no hooks secret', refused: true };
      const job = 'backup_id' in rest ? rest.backup_id : rest.restore_id;
      const body = JSON.stringify({ hook: name, cluster_id: cluster.id, ...rest });
      const sender = createWebhookSender({ urlGuard: deps.urlGuard, timeoutMs: hook.timeout_s * 1000 });
      // One id per hook of one pause: a call made again for it (the reconciler's) carries the same webhook-id.
      return sender.send({ url: hook.url, secret: deps.box.decrypt(cluster.hooksSecretEnc) }, { id: `${job}.${name}.${pause}`, timestamp: deps.now(), body });
    },
  };
}
