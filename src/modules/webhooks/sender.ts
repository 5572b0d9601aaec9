import type { UrlGuard } from '../../net/url-guard.js';

/** What one attempt came to, as GET /v1/webhooks/{id}/deliveries shows it. */
export interface SendResult {
  outcome: 'delivered' | 'failed';
  /** The receiver's HTTP status; null when none came (refused by the guard, connection error, timeout). */
  statusCode: number | null;
  durationMs: number;
  /** Why it failed, fit for the tenant; null when delivered. */
  error: string | null;
  /** The guard refused the URL (or it no longer resolves): the attempt never connected. */
  refused?: boolean;
}

export interface WebhookMessage {
  /** webhook-id: the event's id (receivers deduplicate on it). */
  id: string;
  /** webhook-timestamp. */
  timestamp: Date;
  /** The JSON body, exactly as signed. */
  body: string;
}

/**
 * One signed POST per call (Standard Webhooks): the URL checked again by the SSRF guard, the
 * connection made only to the addresses it returned, no redirects followed, a 2xx within the
 * timeout is success.
 */
export interface WebhookSender {
  send(target: { url: string; secret: string }, message: WebhookMessage): Promise<SendResult>;
}

export function createWebhookSender(opts: { urlGuard: UrlGuard; timeoutMs: number }): WebhookSender {
  void opts;
  return {
    async send() {
      throw new Error('webhook sending is not built yet');
    },
  };
}
