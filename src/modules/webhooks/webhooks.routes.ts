import type { App } from '../../http/types.js';
import type { Guard } from '../../http/auth.js';
import type { WebhookService } from './webhooks.service.js';

export function webhookRoutes(app: App, deps: { guard: Guard; service: WebhookService }) {
  void app;
  void deps;
}
