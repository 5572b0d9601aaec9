import type { Logger } from 'pino';
import type { Db } from '../../db/client.js';
import type { SecretBox } from '../../crypto/secrets.js';
import type { Queues } from '../../queue/queues.js';
import type { Config } from '../../config.js';
import type { WebhookSender } from './sender.js';

export interface DeliverJobDeps {
  db: Db;
  box: SecretBox;
  queues: Pick<Queues, 'add'>;
  sender: WebhookSender;
  settings: Config['webhooks'];
  now: () => Date;
  log: Logger;
}

/** One attempt of one webhook delivery (queue `webhooks`, job `deliver`). */
export function createDeliverJob(_deps: DeliverJobDeps) {
  return async (_payload: { tenant_id: string; delivery_id: string }): Promise<void> => {
    throw new Error('webhook delivery is not built yet');
  };
}
