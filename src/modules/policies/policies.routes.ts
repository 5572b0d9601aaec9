import type { App } from '../../http/types.js';
import type { Guard } from '../../http/auth.js';
import { resourceRoutes } from '../../http/resource-routes.js';
import { createPolicyBody, patchPolicyBody, policySchema } from './policies.schemas.js';
import type { PolicyService } from './policies.service.js';

export function policyRoutes(app: App, deps: { guard: Guard; service: PolicyService }) {
  resourceRoutes(app, {
    path: '/v1/policies',
    tag: 'policies',
    noun: 'policy',
    item: policySchema,
    createBody: createPolicyBody,
    patchBody: patchPolicyBody,
    guard: deps.guard,
    service: deps.service,
    summaries: { update: 'Change a policy (recomputes schedules and retention of its clusters)', delete: 'Delete a policy no cluster uses' },
    conflicts: {
      create: 'a policy with this name already exists in the tenant',
      update: 'another policy has this name, or this is the default policy (which cannot change)',
      delete: 'this is the default policy, or clusters still use it',
    },
    asyncDelete: false,
  });
}
