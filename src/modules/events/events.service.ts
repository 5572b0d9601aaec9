import type { Db } from '../../db/client.js';

export interface EventServiceDeps {
  db: Db;
}

/** Reading a tenant's events (GET /v1/events). Writing them is outbox.ts's, inside the changes' transactions. */
export function createEventService(deps: EventServiceDeps) {
  void deps;
  return {};
}
export type EventService = ReturnType<typeof createEventService>;
