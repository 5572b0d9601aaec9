import type { App } from '../../http/types.js';
import type { Guard } from '../../http/auth.js';
import type { EventService } from './events.service.js';

export function eventRoutes(app: App, deps: { guard: Guard; service: EventService }) {
  void app;
  void deps;
}
