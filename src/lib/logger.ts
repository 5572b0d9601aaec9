import { pino, type DestinationStream, type Logger } from 'pino';

// Secrets never reach a log line: tokens, passwords and component URLs are redacted wherever they appear.
export const REDACT = ['req.headers.authorization', 'req.headers.cookie', '*.password', '*.token', '*.config.url', '*.url_encrypted'];

export function createLogger(level: string, dest?: DestinationStream): Logger {
  return pino({ level, redact: REDACT }, dest);
}
