import type { Logger } from 'pino';
import type { Db } from '../../db/client.js';
import type { SecretBox } from '../../crypto/secrets.js';
import type { Queues } from '../../queue/queues.js';
import type { Config } from '../../config.js';
import type { UrlGuard } from '../../net/url-guard.js';
import type { WebhookSender } from './sender.js';

export interface WebhookServiceDeps {
  db: Db;
  box: SecretBox;
  urlGuard: UrlGuard;
  /** For POST /v1/webhooks/{id}/test: one attempt, answered with its result. */
  sender: WebhookSender;
  queues: Pick<Queues, 'add'>;
  settings: Config['webhooks'];
  now: () => Date;
  log: Logger;
}

export function createWebhookService(deps: WebhookServiceDeps) {
  void deps;
  return {};
}
export type WebhookService = ReturnType<typeof createWebhookService>;
