/**
 * The exit codes of SPEC section 9, the contract cron jobs and scripts test with `$?`. Every
 * failure of a command is a CliError carrying one of them; main.ts prints its message on stderr
 * and exits with its code.
 */
export const EXIT = {
  /** Done (the backup, restore or verification completed, or the request was accepted). */
  ok: 0,
  /** The backup, restore or verification waited for ended failed. */
  failed: 1,
  /** Bad arguments or a request the API refused as invalid (400, 415, 422). */
  usage: 2,
  /** `--timeout` passed while waiting; the work goes on in the service. */
  timeout: 3,
  /** Refused for now: 409 busy or 429 rate limited; the message says when to retry. */
  refused: 4,
  /** Authentication or permission (401, 403, or credentials the token endpoint refused). */
  auth: 5,
  /** The service is unreachable, or answered 5xx after the retries. */
  unavailable: 6,
  /** No such cluster, backup, restore or component. */
  notFound: 7,
} as const;
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

export class CliError extends Error {
  constructor(
    readonly code: ExitCode,
    message: string,
  ) {
    super(message);
  }
}
