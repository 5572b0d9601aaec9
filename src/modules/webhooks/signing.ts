import { createHmac } from 'node:crypto';

/** Standard Webhooks secrets: `whsec_` then the base64 of the key bytes (made by webhooks.service's generateWebhookSecret). */
export const SECRET_PREFIX = 'whsec_';

/** The HMAC key of a secret: the base64-decoded part after `whsec_`. */
export function secretKey(secret: string): Buffer {
  const key = Buffer.from(secret.startsWith(SECRET_PREFIX) ? secret.slice(SECRET_PREFIX.length) : secret, 'base64');
  if (key.length === 0) throw new Error('the webhook secret is empty');
  return key;
}

/** Unix seconds, as webhook-timestamp carries them. */
export function unixSeconds(at: Date): number {
  return Math.floor(at.getTime() / 1000);
}

/**
 * The webhook-signature header: `v1,` + base64 HMAC-SHA256 of `${id}.${timestamp}.${body}`
 * (Standard Webhooks). The body is signed byte for byte as sent.
 */
export function signWebhook(secret: string, id: string, timestamp: number, body: string): string {
  const mac = createHmac('sha256', secretKey(secret)).update(`${id}.${timestamp}.${body}`, 'utf8').digest('base64');
  return `v1,${mac}`;
}
