import type { Logger } from 'pino';
import type { Db } from '../../db/client.js';
import type { SecretBox } from '../../crypto/secrets.js';
import type { Queues } from '../../queue/queues.js';
import type { Config } from '../../config.js';
import { RetryLater } from '../../queue/worker.js';
import type { WebhookSender } from './sender.js';
import { nextAttempt } from './backoff.js';
import { claimAttempt, claimDue, eventBody, failPending, loadDelivery, recordAttempt } from './deliveries.repo.js';
import { attemptOfJob } from './dispatcher.js';

export interface DeliverJobDeps {
  db: Db;
  box: SecretBox;
  queues: Pick<Queues, 'add'>;
  sender: WebhookSender;
  settings: Config['webhooks'];
  now: () => Date;
  log: Logger;
}

/** How long past the timeout a claimed attempt is held before the reconciler may take it as lost. */
const LEASE_MARGIN_MS = 5_000;

/**
 * One attempt of one webhook delivery (queue `webhooks`, job `deliver`, id
 * `deliver-<delivery id>-<attempt>`). The row decides: a delivery that is no longer pending, whose
 * attempt this job names was already made, or whose webhook is gone, ends the job; one that is
 * not yet due waits; otherwise the attempt is claimed (one claimer wins), sent, recorded, and the
 * next attempt's job enqueued after the commit, delayed by the backoff (a lost enqueue is the
 * reconciler's to mend).
 */
export function createDeliverJob(deps: DeliverJobDeps) {
  const { db, settings, log } = deps;
  return async (payload: { tenant_id: string; delivery_id: string }, job?: { id?: string | undefined }): Promise<void> => {
    const now = deps.now();
    const lease = new Date(now.getTime() + settings.timeoutMs + LEASE_MARGIN_MS);
    const named = attemptOfJob(job?.id);
    const claim = { tenantId: payload.tenant_id, id: payload.delivery_id };
    // The common case, one statement: the attempt this job names is due, and claimed.
    let d = named === null ? null : await claimDue(db, { ...claim, attempt: named }, now, lease);
    let attempt = named ?? 0;
    if (!d) {
      // Not claimed: find out why.
      const row = await loadDelivery(db, claim.tenantId, claim.id);
      if (!row || row.status !== 'pending') return;
      if (!row.enabled) {
        await failPending(db, row.tenantId, row.id);
        return;
      }
      attempt = named ?? row.attempts + 1;
      if (row.attempts >= attempt) return; // made already (a job run again after its worker died)
      if (row.attempts < attempt - 1) return; // cannot happen: jobs are only enqueued for the next attempt
      const early = row.nextAttemptAt.getTime() - now.getTime();
      if (early > 0) throw new RetryLater(early, 'the attempt is not due yet');
      if (!(await claimAttempt(db, { ...claim, attempt }, now, lease))) return;
      d = row;
    }

    let result;
    try {
      result = await deps.sender.send({ url: d.url, secret: deps.box.decrypt(d.secretEnc) }, { id: d.event.id, timestamp: now, body: eventBody(d.event) });
    } catch (err) {
      result = { outcome: 'failed' as const, statusCode: null, durationMs: Date.now() - now.getTime(), error: 'the attempt could not be made' };
      log.error({ err, delivery_id: d.id }, 'webhook attempt threw');
    }
    const ended = deps.now();
    const next = result.outcome === 'delivered' ? null : nextAttempt({ attempts: attempt, firstAttemptAt: d.firstAttemptAt ?? now, startedAt: now, now: ended }, settings);
    const retryAt = next && 'retryAt' in next ? next.retryAt : null;
    const outcome = await recordAttempt(db, {
      tenantId: d.tenantId,
      deliveryId: d.id,
      webhookId: d.webhookId,
      eventId: d.event.id,
      attempt,
      startedAt: now,
      result,
      retryAt,
      now: ended,
      disableAfterMs: settings.disableAfterMs,
    });
    log.info(
      { delivery_id: d.id, webhook_id: d.webhookId, event_id: d.event.id, attempt, outcome: result.outcome, status_code: result.statusCode, duration_ms: result.durationMs, delivery_status: outcome.status },
      outcome.disabled ? 'webhook attempt failed; the webhook is disabled' : `webhook attempt ${result.outcome}`,
    );
    if (outcome.status === 'pending' && retryAt) {
      await deps.queues
        .add('webhooks', 'deliver', { tenant_id: d.tenantId, delivery_id: d.id }, `${d.id}-${attempt + 1}`, { delay: Math.max(0, retryAt.getTime() - ended.getTime()) })
        .catch((err: unknown) => log.warn({ err, delivery_id: d.id }, 'could not enqueue the next webhook attempt; the reconciler will'));
    }
  };
}
