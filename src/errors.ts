/** Domain errors thrown by services; src/http/problem.ts maps them to problem+json. */
export interface FieldProblem {
  path: string;
  message: string;
}

export class DomainError extends Error {
  override name = this.constructor.name;
}
export class NotFound extends DomainError {
  constructor(what: string) {
    super(`${what} not found`);
  }
}
export class Conflict extends DomainError {}
export class Invalid extends DomainError {
  constructor(
    message: string,
    readonly errors: FieldProblem[] = [],
  ) {
    super(message);
  }
}
export class RateLimited extends DomainError {
  constructor(
    message: string,
    readonly retryAfterSeconds: number,
  ) {
    super(message);
  }
}
export class Unauthorized extends DomainError {}
export class Forbidden extends DomainError {}
export class Unavailable extends DomainError {}
