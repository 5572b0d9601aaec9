// Generated from openapi/openapi.json by `npm run openapi` (openapi-typescript); do not edit.
export interface paths {
    "/v1/audit-events": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Mutating requests made in this tenant, newest first */
        get: operations["listAuditEvents"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/tenants": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** List tenants (platform token) */
        get: operations["listTenants"];
        put?: never;
        /** Create a tenant (platform token); returns its first admin key */
        post: operations["createTenant"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/api-keys": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** List active API keys */
        get: operations["listApiKeys"];
        put?: never;
        /** Create an API key (the token is shown once) */
        post: operations["createApiKey"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/api-keys/{id}": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        post?: never;
        /** Revoke an API key */
        delete: operations["revokeApiKey"];
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/api-clients": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** List OAuth2 clients (never their secrets) */
        get: operations["listApiClients"];
        put?: never;
        /**
         * Create an OAuth2 client (the client_secret is shown once)
         * @description The client exchanges its client_id and client_secret for access tokens at POST /oauth/token (client credentials grant).
         */
        post: operations["createApiClient"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/api-clients/{id}": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Get an OAuth2 client */
        get: operations["getApiClient"];
        put?: never;
        post?: never;
        /** Delete an OAuth2 client; its access tokens are refused at once */
        delete: operations["deleteApiClient"];
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/policies": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** List policies, newest first */
        get: operations["listPolicies"];
        put?: never;
        /** Create a policy */
        post: operations["createPolicy"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/policies/{id}": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Get a policy */
        get: operations["getPolicy"];
        put?: never;
        post?: never;
        /** Delete a policy no cluster uses */
        delete: operations["deletePolicy"];
        options?: never;
        head?: never;
        /** Change a policy (recomputes schedules and retention of its clusters) */
        patch: operations["updatePolicy"];
        trace?: never;
    };
    "/v1/data-retention": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Each environment type's default policy (Upsun's data_retention) */
        get: operations["getDataRetention"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        /** Change environment defaults (moves the schedules of the clusters that use them) */
        patch: operations["updateDataRetention"];
        trace?: never;
    };
    "/v1/clusters": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** List clusters, newest first */
        get: operations["listClusters"];
        put?: never;
        /** Create a cluster */
        post: operations["createCluster"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/clusters/{id}": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Get a cluster */
        get: operations["getCluster"];
        put?: never;
        post?: never;
        /** Delete a cluster with all its backups and artifacts (409 with deletion protection) */
        delete: operations["deleteCluster"];
        options?: never;
        head?: never;
        /** Change a cluster */
        patch: operations["updateCluster"];
        trace?: never;
    };
    "/v1/clusters/{id}/backups": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** List backups, newest first */
        get: operations["listBackups"];
        put?: never;
        /**
         * Request a manual backup (runs asynchronously)
         * @description 409 while a backup or restore of the cluster is in progress; 429 with Retry-After within manual_rate_limit; 422 when the policy disables manual backups.
         */
        post: operations["createBackup"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/clusters/{id}/backups/{backup_id}": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Get a backup */
        get: operations["getBackup"];
        put?: never;
        post?: never;
        /** Delete a backup: its artifacts, then the record (409 while running) */
        delete: operations["deleteBackup"];
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/clusters/{id}/backups/{backup_id}/verify": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Re-read and re-hash every stored copy of a completed backup (restore testing without restoring) */
        post: operations["verifyBackup"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/clusters/{id}/backups/{backup_id}/files": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /**
         * List one directory of a directory component inside a completed backup
         * @description Names in code-point order, paged by name (`limit`, `cursor`). 404: no such backup, no such component in it, or `path` is not a directory in it; 409: the backup is not completed; 422: `path` is absolute, has `..`, `.` or empty segments, or `component` is not a directory component (or is omitted while the backup has several); 500 (`/problems/integrity-error`): the stored data failed its integrity check.
         */
        get: operations["listBackupFiles"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/clusters/{id}/backups/{backup_id}/components/{name}/archive": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /**
         * Download a portable copy of one component of a completed backup
         * @description A tar of the tree for a directory component, a `pg_dump` custom-format file for a postgres component, the RDB snapshot for a redis component, the dump's SQL for a mysql component; `Content-Disposition: attachment`. Every chunk is verified as it is sent. Problems found before the first byte are answered (404 no such backup or component, 409 not completed, 500 `/problems/integrity-error`); one found later aborts the transfer, so a client never receives a complete-looking file.
         */
        get: operations["downloadComponentArchive"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/usage": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /**
         * The tenant's storage: logical bytes of its completed backups and bytes stored after deduplication, per cluster
         * @description A chunk several clusters share is stored once and counted for the cluster that stored it first; chunks of deleted clusters that other backups still use count in the tenant total only, so the clusters may sum to less than `stored_bytes`.
         */
        get: operations["getUsage"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/clusters/{id}/retention": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Which backups retention keeps, and which rule keeps each */
        get: operations["getRetention"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/clusters/{id}/retention/preview": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /**
         * What retention would keep and delete under a changed policy (nothing is saved)
         * @description The answer of GET /v1/clusters/{id}/retention computed for the draft policy instead of the saved one. The draft is checked by the rules of POST /v1/policies, with the same messages (paths under `body.policy`). Nothing is saved and nothing is deleted.
         */
        post: operations["previewRetention"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/clusters/{id}/backups/{backup_id}/restore": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /**
         * Restore a completed backup into its cluster or another cluster of the tenant
         * @description Every chunk is verified before the target is touched. The target is `restoring` until the restore ends. With `paths` (one directory component only, else 422) only those paths are replaced; each is checked against the backup first (404 naming the first missing one; 500 `/problems/integrity-error` when the manifest cannot be read intact).
         */
        post: operations["createRestore"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/clusters/{id}/restores": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Restores into this cluster or from its backups, newest first */
        get: operations["listRestores"];
        put?: never;
        /**
         * Restore a continuous postgres component as of a point in time into a new database
         * @description A worker replays the newest base backup taken before `point_in_time` and the archived WAL up to it in a scratch PostgreSQL instance of the same major version, then copies the recovered database into the new `target_database` on the component's server. The component's own database is not touched; like every restore, it is the cluster's one active job until it ends (409 while another backup or restore is queued or running). A time outside the recovery window answers 422 naming the window; an existing `target_database` answers 409.
         */
        post: operations["createPointInTimeRestore"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/clusters/{id}/restores/{restore_id}": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Get a restore */
        get: operations["getRestore"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/clusters/{id}/recovery-window": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /**
         * How far back and how recently each continuous postgres component can be restored to a point in time
         * @description Per component with `config.continuous: true`: the window `[earliest_restorable_time, latest_restorable_time]` a point-in-time restore accepts, how much WAL the archiver has not stored yet, and its state. See docs/pitr.md.
         */
        get: operations["getRecoveryWindow"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/events": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** The tenant's events (changes of state of its backups, restores and clusters), newest first */
        get: operations["listEvents"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/webhooks": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** List webhooks, newest first (never their secrets) */
        get: operations["listWebhooks"];
        put?: never;
        /**
         * Create a webhook (its signing secret is shown once)
         * @description The URL is checked by the SSRF guard (422 naming the problem): https only (http where WEBHOOK_ALLOW_HTTP=true), no credentials, and a host that is and resolves to public addresses only, unless WEBHOOK_ALLOWED_HOSTS lists it. Deliveries follow Standard Webhooks (see docs/webhooks.md).
         */
        post: operations["createWebhook"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/webhooks/{id}": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Get a webhook (never its secret) */
        get: operations["getWebhook"];
        put?: never;
        post?: never;
        /** Delete a webhook, its pending deliveries and its delivery history */
        delete: operations["deleteWebhook"];
        options?: never;
        head?: never;
        /** Change a webhook: url (checked again), events, description, enabled */
        patch: operations["updateWebhook"];
        trace?: never;
    };
    "/v1/webhooks/{id}/test": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /**
         * Send a signed `webhook.test` event once and answer what came of it
         * @description One attempt, not retried and not recorded in the deliveries: the body is `{id, type: "webhook.test", occurred_at, cluster_id: null, data: {webhook}}`, signed like every delivery. A disabled webhook can be tested too.
         */
        post: operations["testWebhook"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/webhooks/{id}/deliveries": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Every delivery attempt of a webhook, newest first */
        get: operations["listWebhookDeliveries"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/healthz": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Liveness: the process answers */
        get: operations["getLiveness"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/readyz": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Readiness: PostgreSQL and Redis answer (503 otherwise) */
        get: operations["getReadiness"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/metrics": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Prometheus metrics (text exposition format); needs Authorization: Bearer <METRICS_TOKEN> */
        get: operations["getMetrics"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/oauth/token": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /**
         * Exchange client credentials for an access token (OAuth2 client credentials grant)
         * @description Credentials by HTTP Basic (client_id:client_secret) or as client_id and client_secret in the body, not both. Errors follow RFC 6749 section 5.2: invalid_client (401), invalid_request, invalid_scope, unsupported_grant_type (400).
         */
        post: operations["issueToken"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
}
export type webhooks = Record<string, never>;
export interface components {
    schemas: {
        /** @description Only the environments and fields given change */
        DataRetentionPatchInput: {
            production?: {
                /** @description completed backups kept, manual + scheduled (1..1000) */
                max_backups?: number;
                default_config?: {
                    schedule?: {
                        /** @description <n><unit>, n >= 1, unit h|d|w|M|y, e.g. "1d" */
                        interval: string;
                        /** @description >= 1 */
                        count: number;
                    }[];
                    /** @description completed manual backups kept; 0 disables manual backups (<= max_backups) */
                    manual_count?: number;
                };
            };
            staging?: {
                /** @description completed backups kept, manual + scheduled (1..1000) */
                max_backups?: number;
                default_config?: {
                    schedule?: {
                        /** @description <n><unit>, n >= 1, unit h|d|w|M|y, e.g. "1d" */
                        interval: string;
                        /** @description >= 1 */
                        count: number;
                    }[];
                    /** @description completed manual backups kept; 0 disables manual backups (<= max_backups) */
                    manual_count?: number;
                };
            };
            development?: {
                /** @description completed backups kept, manual + scheduled (1..1000) */
                max_backups?: number;
                default_config?: {
                    schedule?: {
                        /** @description <n><unit>, n >= 1, unit h|d|w|M|y, e.g. "1d" */
                        interval: string;
                        /** @description >= 1 */
                        count: number;
                    }[];
                    /** @description completed manual backups kept; 0 disables manual backups (<= max_backups) */
                    manual_count?: number;
                };
            };
        };
        /** @description A policy that is not saved, to see what retention would keep and delete under it */
        RetentionPreviewRequestInput: {
            /** @description the draft: the fields of a policy; those left out keep the cluster's saved policy's values */
            policy: {
                name?: string;
                /** @description IANA time zone for calendar buckets */
                timezone?: string;
                schedule?: {
                    /** @description <n><unit>, n >= 1, unit h|d|w|M|y, e.g. "1d" */
                    interval: string;
                    /** @description >= 1 */
                    count: number;
                }[];
                /** @description completed backups kept, manual + scheduled (1..1000) */
                max_backups?: number;
                /** @description completed manual backups kept; 0 disables manual backups (<= max_backups) */
                manual_count?: number;
                /** @description at most one manual backup per this period per cluster; null: no limit */
                manual_rate_limit?: string | null;
                /** @description failed backups kept per trigger (0..100) */
                failed_count?: number;
                /** @description false: scheduled backups are consistent, the cluster paused by its pre_backup/post_backup hooks (clusters without a pre_backup hook have nothing to pause and stay live) */
                scheduled_live?: boolean;
                /** @description continuous postgres components: base backups and WAL are kept to restore to any point this far back from the newest backup, e.g. "14d"; null: no window */
                recovery_window?: string | null;
            };
        };
        /** @description RFC 9457 problem details, always sent as application/problem+json */
        Problem: {
            /** @description a URI reference naming the kind of problem, e.g. `/problems/validation-error` */
            type: string;
            /** @description short summary of the kind (the same for every problem of one type) */
            title: string;
            /** @description the HTTP status code */
            status: number;
            /** @description what went wrong in this case, for a human */
            detail: string;
            /** @description every problem found with the request (422) */
            errors?: {
                /** @description where, e.g. `body.components.0.config.path` or `querystring.limit` */
                path: string;
                message: string;
            }[];
        };
        Policy: {
            /** Format: uuid */
            id: string;
            name: string;
            /** @description one of the three environment defaults: editable, not deletable */
            is_default: boolean;
            /** @description the environment type this policy is the default of; null for other policies */
            environment: ("production" | "staging" | "development") | null;
            timezone: string;
            schedule: {
                interval: string;
                count: number;
            }[];
            max_backups: number;
            manual_count: number;
            manual_rate_limit: string | null;
            failed_count: number;
            scheduled_live: boolean;
            /** @description how far back a point-in-time restore can go; null: no window */
            recovery_window: string | null;
            /** Format: date-time */
            created_at: string;
            /** Format: date-time */
            updated_at: string;
        };
        EnvironmentRetention: {
            max_backups: number;
            default_config: {
                schedule: {
                    interval: string;
                    count: number;
                }[];
                manual_count: number;
            };
        };
        /** @description Each environment type's default policy, in Upsun's data_retention shape */
        DataRetention: {
            production: components["schemas"]["EnvironmentRetention"];
            staging: components["schemas"]["EnvironmentRetention"];
            development: components["schemas"]["EnvironmentRetention"];
        };
        ApiKey: {
            /** Format: uuid */
            id: string;
            name: string;
            /** @enum {string} */
            role: "viewer" | "operator" | "admin";
            /** @description first characters of the token, to recognise it */
            prefix: string;
            /** Format: date-time */
            created_at: string;
            expires_at: string | null;
            last_used_at: string | null;
        };
        CreatedApiKey: {
            /** Format: uuid */
            id: string;
            name: string;
            /** @enum {string} */
            role: "viewer" | "operator" | "admin";
            /** @description first characters of the token, to recognise it */
            prefix: string;
            /** Format: date-time */
            created_at: string;
            expires_at: string | null;
            last_used_at: string | null;
            /** @description shown once; only a hash is stored */
            token: string;
        };
        TokenResponse: {
            /** @description a signed JWT; send it as Authorization: Bearer <access_token> */
            access_token: string;
            /** @constant */
            token_type: "Bearer";
            /** @description seconds until it expires (OAUTH_TOKEN_TTL_S) */
            expires_in: number;
            /**
             * @description the role the token carries
             * @enum {string}
             */
            scope: "viewer" | "operator" | "admin";
        };
        /** @description RFC 6749 section 5.2 error response (application/json) */
        OAuthError: {
            /** @enum {string} */
            error: "invalid_request" | "invalid_client" | "invalid_scope" | "unsupported_grant_type";
            error_description: string;
        };
        ApiClient: {
            /** Format: uuid */
            id: string;
            /**
             * Format: uuid
             * @description the OAuth2 client_id (the same value as id)
             */
            client_id: string;
            name: string;
            /** @enum {string} */
            role: "viewer" | "operator" | "admin";
            /** Format: date-time */
            created_at: string;
            /** @description when it last obtained an access token */
            last_used_at: string | null;
        };
        CreatedApiClient: {
            /** Format: uuid */
            id: string;
            /**
             * Format: uuid
             * @description the OAuth2 client_id (the same value as id)
             */
            client_id: string;
            name: string;
            /** @enum {string} */
            role: "viewer" | "operator" | "admin";
            /** Format: date-time */
            created_at: string;
            /** @description when it last obtained an access token */
            last_used_at: string | null;
            /** @description shown once; only a hash is stored */
            client_secret: string;
        };
        Backup: {
            /** Format: uuid */
            id: string;
            /** Format: uuid */
            cluster_id: string;
            /** @enum {string} */
            trigger: "manual" | "scheduled";
            live: boolean;
            /** @enum {string} */
            status: "queued" | "running" | "completed" | "failed" | "deleting";
            /** Format: date-time */
            created_at: string;
            started_at: string | null;
            completed_at: string | null;
            /** @description logical bytes of its components */
            size_bytes: number | null;
            /** @description bytes it added to the store after deduplication and compression (null until completed) */
            stored_bytes: number | null;
            /** @description a consistent backup's pause: from the pre_backup hook's answer to the post_backup call, once every component reached its consistent point (null for live backups) */
            paused_ms: number | null;
            artifacts: {
                component: string;
                /** @enum {string} */
                type: "directory" | "postgres" | "redis" | "mysql";
                /** @description logical bytes of the component */
                bytes: number;
                /** @description bytes this component added to the store, after deduplication and compression */
                stored_bytes: number;
                /** @description sha256 of the component's manifest, which names every chunk */
                sha256: string;
                /** @description URL of the primary copy */
                location: string;
                locations: {
                    /** @enum {string} */
                    store: "primary" | "secondary";
                    url: string;
                    /** @enum {string} */
                    status: "pending" | "present" | "failed";
                }[];
            }[];
            error: {
                component: string | null;
                message: string;
            } | null;
            components: {
                name: string;
                status: string;
            }[];
            /** @description while running, updated at least every 2 s; totals are null until known */
            progress: {
                bytes_done: number;
                bytes_total: number | null;
                files_done: number;
                files_total: number | null;
            };
            /** @description outcome of the last POST .../verify (restore testing without restoring) */
            verification: {
                /** @enum {string} */
                status: "queued" | "running" | "passed" | "failed";
                checked_at: string | null;
                message: string | null;
            } | null;
            /** @description the dual-region copy (null for same-region clusters): degraded while a copy failed; retried with a growing backoff until it succeeds */
            replication: {
                /** @enum {string} */
                status: "pending" | "replicated" | "degraded";
                attempts: number;
                next_attempt_at: string | null;
                error: string | null;
            } | null;
        };
        FileEntry: {
            /** @description name inside the listed directory */
            name: string;
            /** @enum {string} */
            type: "file" | "directory" | "symlink";
            /** @description bytes of a file; 0 for directories and symlinks */
            size: number;
            /** @description permission bits, setuid/setgid/sticky included (mode & 0o7777) */
            mode: number;
            /**
             * Format: date-time
             * @description modification time, RFC 3339 UTC with nanoseconds
             */
            mtime: string;
            /** @description a symlink's target, as stored */
            link_target?: string;
        };
        Usage: {
            /** @description sum of size_bytes of the tenant's completed backups */
            logical_bytes: number;
            /** @description sealed bytes of every chunk in the tenant's repository (after deduplication, compression and encryption), clusters since deleted included */
            stored_bytes: number;
            clusters: {
                /** Format: uuid */
                cluster_id: string;
                name: string;
                /** @description sum of size_bytes of the cluster's completed backups */
                logical_bytes: number;
                /** @description sealed bytes of the chunks this cluster stored first (a chunk other clusters share counts once, for the cluster that stored it first) */
                stored_bytes: number;
            }[];
        };
        /** @description URLs called around consistent backups and restores (SPEC section 11) */
        ClusterHooks: {
            pre_backup: {
                url: string;
                timeout_s: number;
            } | null;
            post_backup: {
                url: string;
                timeout_s: number;
            } | null;
            pre_restore: {
                url: string;
                timeout_s: number;
            } | null;
            post_restore: {
                url: string;
                timeout_s: number;
            } | null;
        };
        /** @description a component as answered: secrets are masked */
        Component: {
            name: string;
            /** @constant */
            type: "directory";
            config: {
                /** @description relative to the tenant's folder under DATA_ROOT */
                path: string;
            };
        } | {
            name: string;
            /** @constant */
            type: "postgres";
            config: {
                /** @description the postgresql:// URL given, its password (and secret parameters) masked as `***` */
                url: string;
                /** @description whether the WAL is archived continuously (point-in-time recovery) */
                continuous: boolean;
            };
        } | {
            name: string;
            /** @constant */
            type: "redis";
            config: {
                /** @description the redis:// URL given, its password masked as `***` */
                url: string;
            };
        } | {
            name: string;
            /** @constant */
            type: "mysql";
            config: {
                /** @description the mysql:// URL given, its password masked as `***` */
                url: string;
            };
        };
        Cluster: {
            /** Format: uuid */
            id: string;
            name: string;
            /** @enum {string} */
            environment: "production" | "staging" | "development";
            region: string;
            /** @enum {string} */
            backup_location: "same-region" | "dual-region";
            /** Format: uuid */
            policy_id: string;
            deletion_protection: boolean;
            components: components["schemas"]["Component"][];
            hooks: components["schemas"]["ClusterHooks"];
            /** @description the secret hook calls are signed with (Standard Webhooks): in the answer that gave the cluster its first hook, and never again */
            hooks_secret?: string;
            /** @enum {string} */
            status: "active" | "restoring" | "deleting";
            next_backup_at: string | null;
            last_skipped_at: string | null;
            /** Format: date-time */
            created_at: string;
        };
        /** @description a problem naming the checks that failed */
        NotReady: {
            /** @description a URI reference naming the kind of problem, e.g. `/problems/validation-error` */
            type: string;
            /** @description short summary of the kind (the same for every problem of one type) */
            title: string;
            /** @description the HTTP status code */
            status: number;
            /** @description what went wrong in this case, for a human */
            detail: string;
            /** @description every problem found with the request (422) */
            errors?: {
                /** @description where, e.g. `body.components.0.config.path` or `querystring.limit` */
                path: string;
                message: string;
            }[];
            checks: {
                [key: string]: "ok" | "down";
            };
        };
        Retention: {
            /** Format: uuid */
            cluster_id: string;
            /** Format: uuid */
            policy_id: string;
            /** @description null: the policy has no recovery_window, or the cluster no completed backup. Otherwise the backups kept with reason recovery_window are the base backups that stopped at or after `start`, and the latest that stopped before it */
            recovery_window: {
                /** @description the policy's recovery_window, e.g. "14d" */
                interval: string;
                /**
                 * Format: date-time
                 * @description the newest completed backup's created_at minus the window, in the policy's time zone (not the current time, so an idle cluster keeps its window): a point-in-time restore to any moment from here on stays possible
                 */
                start: string;
                /** @description the base backup a restore to `start` replays (the latest that stopped at or before it): kept whatever max_backups says; null: no base backup stopped that early */
                replayed_backup_id: string | null;
            } | null;
            items: {
                /** Format: uuid */
                backup_id: string;
                /** @enum {string} */
                trigger: "manual" | "scheduled";
                /** @enum {string} */
                status: "queued" | "running" | "completed" | "failed" | "deleting";
                /** Format: date-time */
                created_at: string;
                /** @description a completed backup of continuous postgres components: when its base backups stopped (the latest of them), from when on a point-in-time restore can start from it; null otherwise */
                base_backup_stop: string | null;
                keep: boolean;
                /** @description the rules that keep it, e.g. "1d x 7", "manual_count", "newest", "in use", "failed_count", "recovery_window" (a base backup the recovery window needs, see recovery_window) */
                reasons: string[];
            }[];
        };
        Restore: {
            /** Format: uuid */
            id: string;
            /** Format: uuid */
            backup_id: string;
            /** Format: uuid */
            source_cluster_id: string;
            /**
             * Format: uuid
             * @description the target cluster
             */
            cluster_id: string;
            components: string[];
            /** @description the paths a partial restore replaces; null: whole components */
            paths: string[] | null;
            /** @description a point-in-time restore (POST /v1/clusters/{id}/restores): the moment restored; backup_id is the base backup it replays from. null: a restore of a backup */
            point_in_time: string | null;
            /** @description a point-in-time restore: the new database it creates on the component's server; null otherwise */
            target_database: string | null;
            /** @enum {string} */
            status: "queued" | "running" | "completed" | "failed";
            error: {
                component: string | null;
                message: string;
            } | null;
            /** Format: date-time */
            created_at: string;
            started_at: string | null;
            completed_at: string | null;
        };
        ComponentRecoveryWindow: {
            component: string;
            /** @description the stop time of the oldest base backup kept with its WAL; null until the first base backup completes */
            earliest_restorable_time: string | null;
            /** @description every transaction committed before it is archived; trails the source by at most 10 s while streaming; null until WAL is stored */
            latest_restorable_time: string | null;
            /** @description WAL the source has written that is not archived yet */
            lag_bytes: number | null;
            /** @enum {string} */
            state: "streaming" | "behind" | "stopped";
            /** @description why the archiver stopped or fell behind, when it did */
            error: string | null;
        };
        RecoveryWindow: {
            /** @description one per continuous postgres component of the cluster */
            components: components["schemas"]["ComponentRecoveryWindow"][];
        };
        AuditEvent: {
            /** Format: uuid */
            id: string;
            action: string;
            actor: {
                /** @enum {string} */
                type: "platform" | "api_key" | "api_client";
                /** @description the API key, or the API client of the access token */
                key_id: string | null;
            };
            target: {
                type: string | null;
                id: string | null;
            };
            /** @enum {string} */
            outcome: "success" | "failure";
            status_code: number;
            request_id: string;
            method: string;
            path: string;
            /** Format: date-time */
            created_at: string;
        };
        Tenant: {
            /** Format: uuid */
            id: string;
            name: string;
            /** @description the tenant's folder under DATA_ROOT, where its directory components live; one folder name, unique across tenants */
            data_dir: string;
            /** Format: date-time */
            created_at: string;
        };
        /** @description the tenant and its first admin key (token shown once) */
        CreatedTenant: {
            tenant: components["schemas"]["Tenant"];
            api_key: components["schemas"]["CreatedApiKey"];
        };
        /** @description a change of state of a backup, restore or cluster, recorded in the transaction of the change (SPEC section 10) */
        Event: {
            /**
             * Format: uuid
             * @description unique; the `webhook-id` header of its deliveries (receivers deduplicate on it)
             */
            id: string;
            /** @enum {string} */
            type: "backup.started" | "backup.completed" | "backup.failed" | "backup.deleted" | "restore.started" | "restore.completed" | "restore.failed" | "verification.failed" | "cluster.deleted" | "hook.failed" | "webhook.disabled" | "archiver.behind" | "archiver.stopped";
            /**
             * Format: date-time
             * @description when the change happened (for a start or an end, the resource's started_at or completed_at)
             */
            occurred_at: string;
            /** @description the cluster concerned (the target cluster of a restore); null for events of no cluster (webhook.disabled) */
            cluster_id: string | null;
            /** @description the resource concerned, under its kind: one of backup, restore, cluster, webhook, hook, stream */
            data: {
                /** @description backup.*, verification.failed: the backup as `GET /v1/clusters/{id}/backups/{backup_id}` showed it right after the change (schema Backup); for backup.deleted, as last shown (`deleting`) */
                backup?: {
                    [key: string]: unknown;
                };
                /** @description restore.*: the restore as `GET /v1/clusters/{id}/restores/{restore_id}` showed it right after the change (schema Restore) */
                restore?: {
                    [key: string]: unknown;
                };
                /** @description cluster.deleted: the cluster as `GET /v1/clusters/{id}` last showed it (`deleting`) (schema Cluster) */
                cluster?: {
                    [key: string]: unknown;
                };
                /** @description webhook.disabled: the webhook as `GET /v1/webhooks/{id}` showed it (schema Webhook) */
                webhook?: {
                    [key: string]: unknown;
                };
                /** @description hook.failed: which hook failed and how: `{name, status_code, duration_ms, error}` (with the backup or restore it was called for) */
                hook?: {
                    [key: string]: unknown;
                };
                /** @description archiver.behind, archiver.stopped: a continuous component's WAL stream `{id, cluster_id, component, state, error, lag_bytes, latest_restorable_time, stored_lsn}` (docs/pitr.md) */
                stream?: {
                    [key: string]: unknown;
                };
            } & {
                [key: string]: unknown;
            };
        };
        Webhook: {
            /** Format: uuid */
            id: string;
            url: string;
            events: ("backup.started" | "backup.completed" | "backup.failed" | "backup.deleted" | "restore.started" | "restore.completed" | "restore.failed" | "verification.failed" | "cluster.deleted" | "hook.failed" | "webhook.disabled" | "archiver.behind" | "archiver.stopped")[];
            description: string | null;
            enabled: boolean;
            /** @description when it was disabled (by an admin, or after failing for too long); null while enabled */
            disabled_at: string | null;
            disabled_reason: string | null;
            /** Format: date-time */
            created_at: string;
            /** Format: date-time */
            updated_at: string;
        };
        CreatedWebhook: {
            /** Format: uuid */
            id: string;
            url: string;
            events: ("backup.started" | "backup.completed" | "backup.failed" | "backup.deleted" | "restore.started" | "restore.completed" | "restore.failed" | "verification.failed" | "cluster.deleted" | "hook.failed" | "webhook.disabled" | "archiver.behind" | "archiver.stopped")[];
            description: string | null;
            enabled: boolean;
            /** @description when it was disabled (by an admin, or after failing for too long); null while enabled */
            disabled_at: string | null;
            disabled_reason: string | null;
            /** Format: date-time */
            created_at: string;
            /** Format: date-time */
            updated_at: string;
            /** @description the signing secret, shown once: `whsec_` and base64 of 32 random bytes (Standard Webhooks); the key of the HMAC is the base64-decoded part after `whsec_` */
            secret: string;
        };
        WebhookDeliveryAttempt: {
            /** Format: uuid */
            id: string;
            /**
             * Format: uuid
             * @description the delivery (one per webhook and event) this attempt belongs to
             */
            delivery_id: string;
            /**
             * Format: uuid
             * @description the event delivered: the webhook-id header
             */
            event_id: string;
            event_type: string;
            /** @description 1 for the first attempt of the delivery, 2 for its first retry, ... */
            attempt: number;
            /** Format: date-time */
            started_at: string;
            duration_ms: number;
            /** @description the receiver's HTTP status; null when none came (refused by the SSRF guard, connection error, timeout) */
            status_code: number | null;
            /** @enum {string} */
            outcome: "delivered" | "failed";
            /** @description why it failed; null when delivered */
            error: string | null;
            /**
             * @description where the delivery stands now: pending (a retry is due), delivered, failed (given up)
             * @enum {string}
             */
            delivery_status: "pending" | "delivered" | "failed";
        };
        WebhookTestResult: {
            /**
             * Format: uuid
             * @description the id of the synthetic `webhook.test` event sent (its webhook-id header)
             */
            event_id: string;
            /** @enum {string} */
            outcome: "delivered" | "failed";
            status_code: number | null;
            duration_ms: number;
            error: string | null;
        };
    };
    responses: {
        /** @description the body is not valid JSON (or is empty under a JSON content type) */
        BadRequest: {
            headers: {
                "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                "X-Request-Id": components["headers"]["X-Request-Id"];
                [name: string]: unknown;
            };
            content: {
                "application/problem+json": components["schemas"]["Problem"];
            };
        };
        /** @description missing, unknown, revoked or expired credential */
        Unauthorized: {
            headers: {
                "WWW-Authenticate": components["headers"]["WWW-Authenticate"];
                "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                "X-Request-Id": components["headers"]["X-Request-Id"];
                [name: string]: unknown;
            };
            content: {
                "application/problem+json": components["schemas"]["Problem"];
            };
        };
        /** @description the credential's role (or the kind of credential) does not allow this operation */
        Forbidden: {
            headers: {
                "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                "X-Request-Id": components["headers"]["X-Request-Id"];
                [name: string]: unknown;
            };
            content: {
                "application/problem+json": components["schemas"]["Problem"];
            };
        };
        /** @description no such resource in the credential's tenant (another tenant's id, or a malformed one, answers the same) */
        NotFound: {
            headers: {
                "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                "X-Request-Id": components["headers"]["X-Request-Id"];
                [name: string]: unknown;
            };
            content: {
                "application/problem+json": components["schemas"]["Problem"];
            };
        };
        /** @description the body is larger than BODY_LIMIT_BYTES */
        ContentTooLarge: {
            headers: {
                "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                "X-Request-Id": components["headers"]["X-Request-Id"];
                [name: string]: unknown;
            };
            content: {
                "application/problem+json": components["schemas"]["Problem"];
            };
        };
        /** @description the body is not application/json (the detail names the type expected) */
        UnsupportedMediaType: {
            headers: {
                "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                "X-Request-Id": components["headers"]["X-Request-Id"];
                [name: string]: unknown;
            };
            content: {
                "application/problem+json": components["schemas"]["Problem"];
            };
        };
        /** @description the request is invalid; `errors` lists every problem with its path */
        ValidationFailed: {
            headers: {
                "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                "X-Request-Id": components["headers"]["X-Request-Id"];
                [name: string]: unknown;
            };
            content: {
                "application/problem+json": components["schemas"]["Problem"];
            };
        };
        /** @description over the rate limit of this credential or client address (RATE_LIMIT_MAX per RATE_LIMIT_WINDOW_MS) */
        TooManyRequests: {
            headers: {
                "Retry-After": components["headers"]["Retry-After"];
                "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                "X-Request-Id": components["headers"]["X-Request-Id"];
                [name: string]: unknown;
            };
            content: {
                "application/problem+json": components["schemas"]["Problem"];
            };
        };
        /** @description the database is unavailable; try again after Retry-After */
        Unavailable: {
            headers: {
                "Retry-After": components["headers"]["Retry-After"];
                "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                "X-Request-Id": components["headers"]["X-Request-Id"];
                [name: string]: unknown;
            };
            content: {
                "application/problem+json": components["schemas"]["Problem"];
            };
        };
    };
    parameters: never;
    requestBodies: never;
    headers: {
        /** @description the path of the resource created or started */
        Location: string;
        /** @description present (`true`) when this is the stored first answer to an earlier request with the same Idempotency-Key and body */
        "Idempotent-Replayed": "true";
        /** @description `attachment; filename="..."`: the suggested file name */
        "Content-Disposition": string;
        /** @description the authentication scheme to use, e.g. `Bearer realm="backups"` */
        "WWW-Authenticate": string;
        /** @description seconds to wait before trying again */
        "Retry-After": number;
        /** @description requests allowed per window for this credential (or, before it authenticated here, this client address) */
        "RateLimit-Limit": number;
        /** @description requests left in the current window */
        "RateLimit-Remaining": number;
        /** @description seconds until the current window ends */
        "RateLimit-Reset": number;
        /** @description the request's id (the caller's X-Request-Id when well formed), as logged */
        "X-Request-Id": string;
    };
    pathItems: never;
}
export type $defs = Record<string, never>;
export interface operations {
    listAuditEvents: {
        parameters: {
            query?: {
                action?: "api_client.create" | "api_client.delete" | "api_key.create" | "api_key.revoke" | "backup.create" | "backup.delete" | "backup.verify" | "cluster.create" | "cluster.delete" | "cluster.update" | "data_retention.update" | "policy.create" | "policy.delete" | "policy.update" | "restore.create" | "tenant.create" | "webhook.create" | "webhook.delete" | "webhook.disable" | "webhook.test" | "webhook.update";
                /** @description id of the resource acted on */
                target_id?: string;
                limit?: number;
                cursor?: string;
            };
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description a page of audit events */
            200: {
                headers: {
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": {
                        items: components["schemas"]["AuditEvent"][];
                        /** @description pass as `cursor` for the next page; null on the last page */
                        next_cursor: string | null;
                    };
                };
            };
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            422: components["responses"]["ValidationFailed"];
            429: components["responses"]["TooManyRequests"];
            503: components["responses"]["Unavailable"];
        };
    };
    listTenants: {
        parameters: {
            query?: {
                limit?: number;
                cursor?: string;
            };
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description a page of tenants */
            200: {
                headers: {
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": {
                        items: components["schemas"]["Tenant"][];
                        /** @description pass as `cursor` for the next page; null on the last page */
                        next_cursor: string | null;
                    };
                };
            };
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            422: components["responses"]["ValidationFailed"];
            429: components["responses"]["TooManyRequests"];
            503: components["responses"]["Unavailable"];
        };
    };
    createTenant: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": {
                    name: string;
                    /** @description the tenant's folder under DATA_ROOT (one folder name, unique across tenants); default: the tenant's id */
                    data_dir?: string;
                };
            };
        };
        responses: {
            /** @description the tenant and its first admin key (the token is shown once) */
            201: {
                headers: {
                    Location: components["headers"]["Location"];
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["CreatedTenant"];
                };
            };
            400: components["responses"]["BadRequest"];
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            /** @description another tenant has this name or this data_dir */
            409: {
                headers: {
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["Problem"];
                };
            };
            413: components["responses"]["ContentTooLarge"];
            415: components["responses"]["UnsupportedMediaType"];
            422: components["responses"]["ValidationFailed"];
            429: components["responses"]["TooManyRequests"];
            503: components["responses"]["Unavailable"];
        };
    };
    listApiKeys: {
        parameters: {
            query?: {
                limit?: number;
                cursor?: string;
            };
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description a page of active keys (never their tokens) */
            200: {
                headers: {
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": {
                        items: components["schemas"]["ApiKey"][];
                        /** @description pass as `cursor` for the next page; null on the last page */
                        next_cursor: string | null;
                    };
                };
            };
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            422: components["responses"]["ValidationFailed"];
            429: components["responses"]["TooManyRequests"];
            503: components["responses"]["Unavailable"];
        };
    };
    createApiKey: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": {
                    name: string;
                    /** @enum {string} */
                    role: "viewer" | "operator" | "admin";
                    /** @description RFC 3339; omitted or null: never expires */
                    expires_at?: string | null;
                };
            };
        };
        responses: {
            /** @description the key with its token (shown once) */
            201: {
                headers: {
                    Location: components["headers"]["Location"];
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["CreatedApiKey"];
                };
            };
            400: components["responses"]["BadRequest"];
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            413: components["responses"]["ContentTooLarge"];
            415: components["responses"]["UnsupportedMediaType"];
            422: components["responses"]["ValidationFailed"];
            429: components["responses"]["TooManyRequests"];
            503: components["responses"]["Unavailable"];
        };
    };
    revokeApiKey: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                id: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description revoked */
            204: {
                headers: {
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content?: never;
            };
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            404: components["responses"]["NotFound"];
            /** @description the last admin key of the tenant cannot be revoked; create another admin key first */
            409: {
                headers: {
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["Problem"];
                };
            };
            422: components["responses"]["ValidationFailed"];
            429: components["responses"]["TooManyRequests"];
            503: components["responses"]["Unavailable"];
        };
    };
    listApiClients: {
        parameters: {
            query?: {
                limit?: number;
                cursor?: string;
            };
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description a page of clients (never their secrets) */
            200: {
                headers: {
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": {
                        items: components["schemas"]["ApiClient"][];
                        /** @description pass as `cursor` for the next page; null on the last page */
                        next_cursor: string | null;
                    };
                };
            };
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            422: components["responses"]["ValidationFailed"];
            429: components["responses"]["TooManyRequests"];
            503: components["responses"]["Unavailable"];
        };
    };
    createApiClient: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": {
                    name: string;
                    /**
                     * @description the most its tokens may do; a token may ask for a narrower scope
                     * @enum {string}
                     */
                    role: "viewer" | "operator" | "admin";
                };
            };
        };
        responses: {
            /** @description the client with its client_secret (shown once) */
            201: {
                headers: {
                    Location: components["headers"]["Location"];
                    /** @description the answer carries a credential: never cache it */
                    "Cache-Control"?: "no-store";
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["CreatedApiClient"];
                };
            };
            400: components["responses"]["BadRequest"];
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            413: components["responses"]["ContentTooLarge"];
            415: components["responses"]["UnsupportedMediaType"];
            422: components["responses"]["ValidationFailed"];
            429: components["responses"]["TooManyRequests"];
            503: components["responses"]["Unavailable"];
        };
    };
    getApiClient: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                id: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description the client (never its secret) */
            200: {
                headers: {
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ApiClient"];
                };
            };
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            404: components["responses"]["NotFound"];
            422: components["responses"]["ValidationFailed"];
            429: components["responses"]["TooManyRequests"];
            503: components["responses"]["Unavailable"];
        };
    };
    deleteApiClient: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                id: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description deleted; its access tokens are refused from now on */
            204: {
                headers: {
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content?: never;
            };
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            404: components["responses"]["NotFound"];
            422: components["responses"]["ValidationFailed"];
            429: components["responses"]["TooManyRequests"];
            503: components["responses"]["Unavailable"];
        };
    };
    listPolicies: {
        parameters: {
            query?: {
                limit?: number;
                cursor?: string;
            };
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description a page of policies */
            200: {
                headers: {
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": {
                        items: components["schemas"]["Policy"][];
                        /** @description pass as `cursor` for the next page; null on the last page */
                        next_cursor: string | null;
                    };
                };
            };
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            422: components["responses"]["ValidationFailed"];
            429: components["responses"]["TooManyRequests"];
            503: components["responses"]["Unavailable"];
        };
    };
    createPolicy: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": {
                    name: string;
                    /**
                     * @description IANA time zone for calendar buckets
                     * @default UTC
                     */
                    timezone?: string;
                    /**
                     * @default [
                     *       {
                     *         "interval": "1d",
                     *         "count": 2
                     *       }
                     *     ]
                     */
                    schedule?: {
                        /** @description <n><unit>, n >= 1, unit h|d|w|M|y, e.g. "1d" */
                        interval: string;
                        /** @description >= 1 */
                        count: number;
                    }[];
                    /**
                     * @description completed backups kept, manual + scheduled (1..1000)
                     * @default 10
                     */
                    max_backups?: number;
                    /**
                     * @description completed manual backups kept; 0 disables manual backups (<= max_backups)
                     * @default 3
                     */
                    manual_count?: number;
                    /**
                     * @description at most one manual backup per this period per cluster; null: no limit
                     * @default 1h
                     */
                    manual_rate_limit?: string | null;
                    /**
                     * @description failed backups kept per trigger (0..100)
                     * @default 3
                     */
                    failed_count?: number;
                    /**
                     * @description false: scheduled backups are consistent, the cluster paused by its pre_backup/post_backup hooks (clusters without a pre_backup hook have nothing to pause and stay live)
                     * @default true
                     */
                    scheduled_live?: boolean;
                    /**
                     * @description continuous postgres components: base backups and WAL are kept to restore to any point this far back from the newest backup, e.g. "14d"; null: no window
                     * @default null
                     */
                    recovery_window?: string | null;
                };
            };
        };
        responses: {
            /** @description the policy created */
            201: {
                headers: {
                    Location: components["headers"]["Location"];
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Policy"];
                };
            };
            400: components["responses"]["BadRequest"];
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            /** @description a policy with this name already exists in the tenant */
            409: {
                headers: {
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["Problem"];
                };
            };
            413: components["responses"]["ContentTooLarge"];
            415: components["responses"]["UnsupportedMediaType"];
            422: components["responses"]["ValidationFailed"];
            429: components["responses"]["TooManyRequests"];
            503: components["responses"]["Unavailable"];
        };
    };
    getPolicy: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                id: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description the policy */
            200: {
                headers: {
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Policy"];
                };
            };
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            404: components["responses"]["NotFound"];
            422: components["responses"]["ValidationFailed"];
            429: components["responses"]["TooManyRequests"];
            503: components["responses"]["Unavailable"];
        };
    };
    deletePolicy: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                id: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description deleted */
            204: {
                headers: {
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content?: never;
            };
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            404: components["responses"]["NotFound"];
            /** @description this is an environment's default policy, or clusters still use it */
            409: {
                headers: {
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["Problem"];
                };
            };
            422: components["responses"]["ValidationFailed"];
            429: components["responses"]["TooManyRequests"];
            503: components["responses"]["Unavailable"];
        };
    };
    updatePolicy: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                id: string;
            };
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": {
                    name?: string;
                    /** @description IANA time zone for calendar buckets */
                    timezone?: string;
                    schedule?: {
                        /** @description <n><unit>, n >= 1, unit h|d|w|M|y, e.g. "1d" */
                        interval: string;
                        /** @description >= 1 */
                        count: number;
                    }[];
                    /** @description completed backups kept, manual + scheduled (1..1000) */
                    max_backups?: number;
                    /** @description completed manual backups kept; 0 disables manual backups (<= max_backups) */
                    manual_count?: number;
                    /** @description at most one manual backup per this period per cluster; null: no limit */
                    manual_rate_limit?: string | null;
                    /** @description failed backups kept per trigger (0..100) */
                    failed_count?: number;
                    /** @description false: scheduled backups are consistent, the cluster paused by its pre_backup/post_backup hooks (clusters without a pre_backup hook have nothing to pause and stay live) */
                    scheduled_live?: boolean;
                    /** @description continuous postgres components: base backups and WAL are kept to restore to any point this far back from the newest backup, e.g. "14d"; null: no window */
                    recovery_window?: string | null;
                };
            };
        };
        responses: {
            /** @description the policy as changed */
            200: {
                headers: {
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Policy"];
                };
            };
            400: components["responses"]["BadRequest"];
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            404: components["responses"]["NotFound"];
            /** @description another policy has this name */
            409: {
                headers: {
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["Problem"];
                };
            };
            413: components["responses"]["ContentTooLarge"];
            415: components["responses"]["UnsupportedMediaType"];
            422: components["responses"]["ValidationFailed"];
            429: components["responses"]["TooManyRequests"];
            503: components["responses"]["Unavailable"];
        };
    };
    getDataRetention: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description the three defaults */
            200: {
                headers: {
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["DataRetention"];
                };
            };
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            422: components["responses"]["ValidationFailed"];
            429: components["responses"]["TooManyRequests"];
            503: components["responses"]["Unavailable"];
        };
    };
    updateDataRetention: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["DataRetentionPatchInput"];
            };
        };
        responses: {
            /** @description the three defaults as they are now */
            200: {
                headers: {
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["DataRetention"];
                };
            };
            400: components["responses"]["BadRequest"];
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            413: components["responses"]["ContentTooLarge"];
            415: components["responses"]["UnsupportedMediaType"];
            /** @description the changed values break a policy rule */
            422: {
                headers: {
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["Problem"];
                };
            };
            429: components["responses"]["TooManyRequests"];
            503: components["responses"]["Unavailable"];
        };
    };
    listClusters: {
        parameters: {
            query?: {
                limit?: number;
                cursor?: string;
            };
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description a page of clusters */
            200: {
                headers: {
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": {
                        items: components["schemas"]["Cluster"][];
                        /** @description pass as `cursor` for the next page; null on the last page */
                        next_cursor: string | null;
                    };
                };
            };
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            422: components["responses"]["ValidationFailed"];
            429: components["responses"]["TooManyRequests"];
            503: components["responses"]["Unavailable"];
        };
    };
    createCluster: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": {
                    name: string;
                    /**
                     * @default production
                     * @enum {string}
                     */
                    environment?: "production" | "staging" | "development";
                    /** @default eu-1 */
                    region?: string;
                    /**
                     * @default same-region
                     * @enum {string}
                     */
                    backup_location?: "same-region" | "dual-region";
                    /** @description omitted or null: the default policy of the cluster's environment, which the cluster then follows (also when its environment changes) */
                    policy_id?: string | null;
                    /** @default false */
                    deletion_protection?: boolean;
                    components: ({
                        name: string;
                        /** @enum {string} */
                        type: "directory";
                        config: {
                            /** @description relative to the operator's DATA_ROOT */
                            path: string;
                        };
                    } | {
                        name: string;
                        /** @enum {string} */
                        type: "postgres";
                        config: {
                            /** @description postgresql:// URL; stored encrypted, and returned with its password (and secret parameters) masked as `***` */
                            url: string;
                            /** @description Point-in-time recovery (docs/pitr.md): the WAL of the server is archived continuously from a replication slot the service creates, and each backup is a base backup. The role needs REPLICATION, the server wal_level replica or logical, and pg_hba.conf a replication line for the role; a save that lacks one answers 422 naming it */
                            continuous?: boolean;
                        };
                    } | {
                        name: string;
                        /** @enum {string} */
                        type: "redis";
                        config: {
                            /** @description redis:// or rediss:// URL (optional user and password, db as the path; every database is backed up); stored encrypted, returned with its password masked as `***`. The user needs the replication commands (+psync +replconf +sync) to back up */
                            url: string;
                        };
                    } | {
                        name: string;
                        /** @enum {string} */
                        type: "mysql";
                        config: {
                            /** @description mysql://user:password@host:port/database (MySQL or MariaDB), optionally ?ssl=require or ?ssl=verify (verify checks the certificate against the host name on the service's own connection; the dump and load tools use TLS without that check, see docs/mysql.md); stored encrypted, returned with its password masked as `***`. The user needs SELECT, SHOW VIEW, LOCK TABLES, TRIGGER and EVENT to back up */
                            url: string;
                        };
                    })[];
                    /** @description pre_backup goes with post_backup and pre_restore with post_restore: a pair is set together or not at all (422 naming the missing one) */
                    hooks?: {
                        /** @description called before a consistent backup reads anything; must answer 2xx (pause writers) */
                        pre_backup?: {
                            /** @description https:// URL the service POSTs to, signed like a webhook; the SSRF rules of webhooks apply */
                            url: string;
                            /** @description a 2xx must come within this many seconds (1-300) */
                            timeout_s: number;
                        } | null;
                        /** @description called once every component reached its consistent point, also when the backup failed (resume writers) */
                        post_backup?: {
                            /** @description https:// URL the service POSTs to, signed like a webhook; the SSRF rules of webhooks apply */
                            url: string;
                            /** @description a 2xx must come within this many seconds (1-300) */
                            timeout_s: number;
                        } | null;
                        /** @description called before a restore writes anything (stop the components) */
                        pre_restore?: {
                            /** @description https:// URL the service POSTs to, signed like a webhook; the SSRF rules of webhooks apply */
                            url: string;
                            /** @description a 2xx must come within this many seconds (1-300) */
                            timeout_s: number;
                        } | null;
                        /** @description called after the restore, also when it failed (start them again) */
                        post_restore?: {
                            /** @description https:// URL the service POSTs to, signed like a webhook; the SSRF rules of webhooks apply */
                            url: string;
                            /** @description a 2xx must come within this many seconds (1-300) */
                            timeout_s: number;
                        } | null;
                    };
                };
            };
        };
        responses: {
            /** @description the cluster created */
            201: {
                headers: {
                    Location: components["headers"]["Location"];
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Cluster"];
                };
            };
            400: components["responses"]["BadRequest"];
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            /** @description a cluster with this name already exists in the tenant */
            409: {
                headers: {
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["Problem"];
                };
            };
            413: components["responses"]["ContentTooLarge"];
            415: components["responses"]["UnsupportedMediaType"];
            422: components["responses"]["ValidationFailed"];
            429: components["responses"]["TooManyRequests"];
            503: components["responses"]["Unavailable"];
        };
    };
    getCluster: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                id: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description the cluster */
            200: {
                headers: {
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Cluster"];
                };
            };
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            404: components["responses"]["NotFound"];
            422: components["responses"]["ValidationFailed"];
            429: components["responses"]["TooManyRequests"];
            503: components["responses"]["Unavailable"];
        };
    };
    deleteCluster: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                id: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description the cluster, now `deleting`: it is gone once its data is */
            202: {
                headers: {
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Cluster"];
                };
            };
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            404: components["responses"]["NotFound"];
            /** @description deletion protection is on (PATCH deletion_protection: false first) */
            409: {
                headers: {
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["Problem"];
                };
            };
            422: components["responses"]["ValidationFailed"];
            429: components["responses"]["TooManyRequests"];
            503: components["responses"]["Unavailable"];
        };
    };
    updateCluster: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                id: string;
            };
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": {
                    name?: string;
                    /** @enum {string} */
                    environment?: "production" | "staging" | "development";
                    region?: string;
                    /** @enum {string} */
                    backup_location?: "same-region" | "dual-region";
                    /** @description null: follow the default policy of the cluster's environment */
                    policy_id?: string | null;
                    deletion_protection?: boolean;
                    components?: ({
                        name: string;
                        /** @enum {string} */
                        type: "directory";
                        config: {
                            /** @description relative to the operator's DATA_ROOT */
                            path: string;
                        };
                    } | {
                        name: string;
                        /** @enum {string} */
                        type: "postgres";
                        config: {
                            /** @description postgresql:// URL; stored encrypted, and returned with its password (and secret parameters) masked as `***` */
                            url: string;
                            /** @description Point-in-time recovery (docs/pitr.md): the WAL of the server is archived continuously from a replication slot the service creates, and each backup is a base backup. The role needs REPLICATION, the server wal_level replica or logical, and pg_hba.conf a replication line for the role; a save that lacks one answers 422 naming it */
                            continuous?: boolean;
                        };
                    } | {
                        name: string;
                        /** @enum {string} */
                        type: "redis";
                        config: {
                            /** @description redis:// or rediss:// URL (optional user and password, db as the path; every database is backed up); stored encrypted, returned with its password masked as `***`. The user needs the replication commands (+psync +replconf +sync) to back up */
                            url: string;
                        };
                    } | {
                        name: string;
                        /** @enum {string} */
                        type: "mysql";
                        config: {
                            /** @description mysql://user:password@host:port/database (MySQL or MariaDB), optionally ?ssl=require or ?ssl=verify (verify checks the certificate against the host name on the service's own connection; the dump and load tools use TLS without that check, see docs/mysql.md); stored encrypted, returned with its password masked as `***`. The user needs SELECT, SHOW VIEW, LOCK TABLES, TRIGGER and EVENT to back up */
                            url: string;
                        };
                    })[];
                    /** @description pre_backup goes with post_backup and pre_restore with post_restore: a pair is set together or not at all (422 naming the missing one) */
                    hooks?: {
                        /** @description called before a consistent backup reads anything; must answer 2xx (pause writers) */
                        pre_backup?: {
                            /** @description https:// URL the service POSTs to, signed like a webhook; the SSRF rules of webhooks apply */
                            url: string;
                            /** @description a 2xx must come within this many seconds (1-300) */
                            timeout_s: number;
                        } | null;
                        /** @description called once every component reached its consistent point, also when the backup failed (resume writers) */
                        post_backup?: {
                            /** @description https:// URL the service POSTs to, signed like a webhook; the SSRF rules of webhooks apply */
                            url: string;
                            /** @description a 2xx must come within this many seconds (1-300) */
                            timeout_s: number;
                        } | null;
                        /** @description called before a restore writes anything (stop the components) */
                        pre_restore?: {
                            /** @description https:// URL the service POSTs to, signed like a webhook; the SSRF rules of webhooks apply */
                            url: string;
                            /** @description a 2xx must come within this many seconds (1-300) */
                            timeout_s: number;
                        } | null;
                        /** @description called after the restore, also when it failed (start them again) */
                        post_restore?: {
                            /** @description https:// URL the service POSTs to, signed like a webhook; the SSRF rules of webhooks apply */
                            url: string;
                            /** @description a 2xx must come within this many seconds (1-300) */
                            timeout_s: number;
                        } | null;
                    };
                };
            };
        };
        responses: {
            /** @description the cluster as changed */
            200: {
                headers: {
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Cluster"];
                };
            };
            400: components["responses"]["BadRequest"];
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            404: components["responses"]["NotFound"];
            /** @description another cluster has this name, or the cluster is being deleted */
            409: {
                headers: {
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["Problem"];
                };
            };
            413: components["responses"]["ContentTooLarge"];
            415: components["responses"]["UnsupportedMediaType"];
            422: components["responses"]["ValidationFailed"];
            429: components["responses"]["TooManyRequests"];
            503: components["responses"]["Unavailable"];
        };
    };
    listBackups: {
        parameters: {
            query?: {
                status?: "queued" | "running" | "completed" | "failed" | "deleting";
                trigger?: "manual" | "scheduled";
                limit?: number;
                cursor?: string;
            };
            header?: never;
            path: {
                id: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description a page of backups */
            200: {
                headers: {
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": {
                        items: components["schemas"]["Backup"][];
                        /** @description pass as `cursor` for the next page; null on the last page */
                        next_cursor: string | null;
                    };
                };
            };
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            404: components["responses"]["NotFound"];
            422: components["responses"]["ValidationFailed"];
            429: components["responses"]["TooManyRequests"];
            503: components["responses"]["Unavailable"];
        };
    };
    createBackup: {
        parameters: {
            query?: never;
            header?: {
                /** @description the same key and body within 24 h returns the first answer */
                "idempotency-key"?: string;
            };
            path: {
                id: string;
            };
            cookie?: never;
        };
        /** @description optional; no body is the same as {} */
        requestBody?: {
            content: {
                "application/json": {
                    /** @description false: a consistent backup, the cluster paused by its pre_backup/post_backup hooks; true: no pause. Default: false when the cluster has a pre_backup hook, else true */
                    live?: boolean;
                } | null;
            };
        };
        responses: {
            /** @description the backup, queued (or, with a replayed Idempotency-Key, as it was first answered); Location is where to poll it */
            202: {
                headers: {
                    Location: components["headers"]["Location"];
                    "Idempotent-Replayed": components["headers"]["Idempotent-Replayed"];
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Backup"];
                };
            };
            400: components["responses"]["BadRequest"];
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            404: components["responses"]["NotFound"];
            /** @description a backup or restore of the cluster is queued or running, or the cluster is being deleted or restored into */
            409: {
                headers: {
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["Problem"];
                };
            };
            413: components["responses"]["ContentTooLarge"];
            415: components["responses"]["UnsupportedMediaType"];
            422: components["responses"]["ValidationFailed"];
            /** @description a manual backup of this cluster was made within the policy's manual_rate_limit (or the request rate limit was reached); Retry-After says when to try again */
            429: {
                headers: {
                    "Retry-After": components["headers"]["Retry-After"];
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["Problem"];
                };
            };
            503: components["responses"]["Unavailable"];
        };
    };
    getBackup: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                id: string;
                backup_id: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description the backup */
            200: {
                headers: {
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Backup"];
                };
            };
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            404: components["responses"]["NotFound"];
            422: components["responses"]["ValidationFailed"];
            429: components["responses"]["TooManyRequests"];
            503: components["responses"]["Unavailable"];
        };
    };
    deleteBackup: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                id: string;
                backup_id: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description the backup, now `deleting`: it is gone once its artifacts are */
            202: {
                headers: {
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Backup"];
                };
            };
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            404: components["responses"]["NotFound"];
            /** @description the backup is running, or a restore is reading it */
            409: {
                headers: {
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["Problem"];
                };
            };
            422: components["responses"]["ValidationFailed"];
            429: components["responses"]["TooManyRequests"];
            503: components["responses"]["Unavailable"];
        };
    };
    verifyBackup: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                id: string;
                backup_id: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description the backup, its `verification` queued; poll the backup until verification.status is passed or failed */
            202: {
                headers: {
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Backup"];
                };
            };
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            404: components["responses"]["NotFound"];
            /** @description the backup is not completed */
            409: {
                headers: {
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["Problem"];
                };
            };
            422: components["responses"]["ValidationFailed"];
            429: components["responses"]["TooManyRequests"];
            503: components["responses"]["Unavailable"];
        };
    };
    listBackupFiles: {
        parameters: {
            query?: {
                /** @description a directory component of the backup; may be omitted when the backup has exactly one */
                component?: string;
                /** @description a directory relative to the component, e.g. `sub/dir`; omitted or empty: the component root */
                path?: string;
                limit?: number;
                cursor?: string;
            };
            header?: never;
            path: {
                id: string;
                backup_id: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description a page of the directory's entries, by name */
            200: {
                headers: {
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": {
                        items: components["schemas"]["FileEntry"][];
                        /** @description pass as `cursor` for the next page; null on the last page */
                        next_cursor: string | null;
                    };
                };
            };
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            404: components["responses"]["NotFound"];
            /** @description the backup is not completed, or its component was stored before the repository format */
            409: {
                headers: {
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["Problem"];
                };
            };
            422: components["responses"]["ValidationFailed"];
            429: components["responses"]["TooManyRequests"];
            /** @description the component's stored data failed an integrity check (type `/problems/integrity-error`) */
            500: {
                headers: {
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["Problem"];
                };
            };
            503: components["responses"]["Unavailable"];
        };
    };
    downloadComponentArchive: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                id: string;
                backup_id: string;
                name: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description the portable copy, streamed; every chunk is verified as it is sent, and a problem found once streaming has begun cuts the transfer off (never a complete-looking file) */
            200: {
                headers: {
                    "Content-Disposition": components["headers"]["Content-Disposition"];
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/x-tar": string;
                    "application/octet-stream": string;
                    "application/sql": string;
                };
            };
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            404: components["responses"]["NotFound"];
            /** @description the backup is not completed, or its component was stored before the repository format */
            409: {
                headers: {
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["Problem"];
                };
            };
            422: components["responses"]["ValidationFailed"];
            429: components["responses"]["TooManyRequests"];
            /** @description the component's stored data failed an integrity check (type `/problems/integrity-error`) */
            500: {
                headers: {
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["Problem"];
                };
            };
            503: components["responses"]["Unavailable"];
        };
    };
    getUsage: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description the tenant's storage, per cluster */
            200: {
                headers: {
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Usage"];
                };
            };
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            422: components["responses"]["ValidationFailed"];
            429: components["responses"]["TooManyRequests"];
            503: components["responses"]["Unavailable"];
        };
    };
    getRetention: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                id: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description every backup of the cluster, whether retention keeps it and the rules that do */
            200: {
                headers: {
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Retention"];
                };
            };
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            404: components["responses"]["NotFound"];
            422: components["responses"]["ValidationFailed"];
            429: components["responses"]["TooManyRequests"];
            503: components["responses"]["Unavailable"];
        };
    };
    previewRetention: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                id: string;
            };
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["RetentionPreviewRequestInput"];
            };
        };
        responses: {
            /** @description every backup of the cluster, whether retention would keep it under the draft and the rules that would */
            200: {
                headers: {
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Retention"];
                };
            };
            400: components["responses"]["BadRequest"];
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            404: components["responses"]["NotFound"];
            413: components["responses"]["ContentTooLarge"];
            415: components["responses"]["UnsupportedMediaType"];
            /** @description the draft breaks a policy rule (the messages of POST /v1/policies) */
            422: {
                headers: {
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["Problem"];
                };
            };
            429: components["responses"]["TooManyRequests"];
            503: components["responses"]["Unavailable"];
        };
    };
    createRestore: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                id: string;
                backup_id: string;
            };
            cookie?: never;
        };
        requestBody?: {
            content: {
                "application/json": {
                    /**
                     * Format: uuid
                     * @description another cluster of the same tenant; omitted: the backup's own cluster
                     */
                    target_cluster_id?: string;
                    /** @description a subset of component names; omitted: all */
                    components?: string[];
                    /** @description partial restore of one directory component (the only component restored): only these files and directories are replaced, each atomically, the rest of the tree is left as it is; each must be in the backup (404 naming the first missing one); omitted: the whole component */
                    paths?: string[];
                } | null;
            };
        };
        responses: {
            /** @description the restore, queued; Location is where to poll it */
            202: {
                headers: {
                    Location: components["headers"]["Location"];
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Restore"];
                };
            };
            400: components["responses"]["BadRequest"];
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            404: components["responses"]["NotFound"];
            /** @description the backup is not completed, or the target cluster is not active (a backup, restore or deletion is under way) */
            409: {
                headers: {
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["Problem"];
                };
            };
            413: components["responses"]["ContentTooLarge"];
            415: components["responses"]["UnsupportedMediaType"];
            422: components["responses"]["ValidationFailed"];
            429: components["responses"]["TooManyRequests"];
            /** @description the backup's manifest failed an integrity check (type `/problems/integrity-error`) */
            500: {
                headers: {
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["Problem"];
                };
            };
            503: components["responses"]["Unavailable"];
        };
    };
    listRestores: {
        parameters: {
            query?: {
                limit?: number;
                cursor?: string;
            };
            header?: never;
            path: {
                id: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description a page of restores */
            200: {
                headers: {
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": {
                        items: components["schemas"]["Restore"][];
                        /** @description pass as `cursor` for the next page; null on the last page */
                        next_cursor: string | null;
                    };
                };
            };
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            404: components["responses"]["NotFound"];
            422: components["responses"]["ValidationFailed"];
            429: components["responses"]["TooManyRequests"];
            503: components["responses"]["Unavailable"];
        };
    };
    createPointInTimeRestore: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                id: string;
            };
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": {
                    /**
                     * Format: date-time
                     * @description the moment whose state is restored: every transaction committed before it, none after; within GET /v1/clusters/{id}/recovery-window (else 422)
                     */
                    point_in_time: string;
                    /** @description the continuous postgres component to restore; omitted: the cluster's only one (422 when it has several) */
                    components?: string[];
                    /** @description the NEW database the state as of point_in_time is restored into, on the component's server (409 when it exists) */
                    target_database: string;
                };
            };
        };
        responses: {
            /** @description the restore, queued; Location is where to poll it */
            202: {
                headers: {
                    Location: components["headers"]["Location"];
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Restore"];
                };
            };
            400: components["responses"]["BadRequest"];
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            404: components["responses"]["NotFound"];
            /** @description target_database already exists on the server, another backup or restore of the cluster is queued or running, or the cluster is being deleted */
            409: {
                headers: {
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["Problem"];
                };
            };
            413: components["responses"]["ContentTooLarge"];
            415: components["responses"]["UnsupportedMediaType"];
            422: components["responses"]["ValidationFailed"];
            429: components["responses"]["TooManyRequests"];
            503: components["responses"]["Unavailable"];
        };
    };
    getRestore: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                id: string;
                restore_id: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description the restore */
            200: {
                headers: {
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Restore"];
                };
            };
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            404: components["responses"]["NotFound"];
            422: components["responses"]["ValidationFailed"];
            429: components["responses"]["TooManyRequests"];
            503: components["responses"]["Unavailable"];
        };
    };
    getRecoveryWindow: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                id: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description the recovery window of each continuous component */
            200: {
                headers: {
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["RecoveryWindow"];
                };
            };
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            404: components["responses"]["NotFound"];
            422: components["responses"]["ValidationFailed"];
            429: components["responses"]["TooManyRequests"];
            503: components["responses"]["Unavailable"];
        };
    };
    listEvents: {
        parameters: {
            query?: {
                /** @description only events of this type */
                type?: "backup.started" | "backup.completed" | "backup.failed" | "backup.deleted" | "restore.started" | "restore.completed" | "restore.failed" | "verification.failed" | "cluster.deleted" | "hook.failed" | "webhook.disabled" | "archiver.behind" | "archiver.stopped";
                /** @description only events of this cluster (a deleted cluster's too); another tenant's id gives an empty page */
                cluster_id?: string;
                limit?: number;
                cursor?: string;
            };
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description a page of events */
            200: {
                headers: {
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": {
                        items: components["schemas"]["Event"][];
                        /** @description pass as `cursor` for the next page; null on the last page */
                        next_cursor: string | null;
                    };
                };
            };
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            422: components["responses"]["ValidationFailed"];
            429: components["responses"]["TooManyRequests"];
            503: components["responses"]["Unavailable"];
        };
    };
    listWebhooks: {
        parameters: {
            query?: {
                limit?: number;
                cursor?: string;
            };
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description a page of webhooks */
            200: {
                headers: {
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": {
                        items: components["schemas"]["Webhook"][];
                        /** @description pass as `cursor` for the next page; null on the last page */
                        next_cursor: string | null;
                    };
                };
            };
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            422: components["responses"]["ValidationFailed"];
            429: components["responses"]["TooManyRequests"];
            503: components["responses"]["Unavailable"];
        };
    };
    createWebhook: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": {
                    /** @description where to POST the events: https (http only where WEBHOOK_ALLOW_HTTP=true), a host that resolves to public addresses only (or one WEBHOOK_ALLOWED_HOSTS lists), no credentials */
                    url: string;
                    /** @description the event types to deliver: at least one, each once */
                    events: ("backup.started" | "backup.completed" | "backup.failed" | "backup.deleted" | "restore.started" | "restore.completed" | "restore.failed" | "verification.failed" | "cluster.deleted" | "hook.failed" | "webhook.disabled" | "archiver.behind" | "archiver.stopped")[];
                    description?: string | null;
                };
            };
        };
        responses: {
            /** @description the webhook with its signing secret (shown once) */
            201: {
                headers: {
                    Location: components["headers"]["Location"];
                    /** @description the answer carries a credential: never cache it */
                    "Cache-Control"?: "no-store";
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["CreatedWebhook"];
                };
            };
            400: components["responses"]["BadRequest"];
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            /** @description the tenant has the most webhooks it may have (50) */
            409: {
                headers: {
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["Problem"];
                };
            };
            413: components["responses"]["ContentTooLarge"];
            415: components["responses"]["UnsupportedMediaType"];
            422: components["responses"]["ValidationFailed"];
            429: components["responses"]["TooManyRequests"];
            503: components["responses"]["Unavailable"];
        };
    };
    getWebhook: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                id: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description the webhook */
            200: {
                headers: {
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Webhook"];
                };
            };
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            404: components["responses"]["NotFound"];
            422: components["responses"]["ValidationFailed"];
            429: components["responses"]["TooManyRequests"];
            503: components["responses"]["Unavailable"];
        };
    };
    deleteWebhook: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                id: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description deleted */
            204: {
                headers: {
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content?: never;
            };
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            404: components["responses"]["NotFound"];
            422: components["responses"]["ValidationFailed"];
            429: components["responses"]["TooManyRequests"];
            503: components["responses"]["Unavailable"];
        };
    };
    updateWebhook: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                id: string;
            };
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": {
                    /** @description checked again like at creation */
                    url?: string;
                    /** @description the event types to deliver: at least one, each once */
                    events?: ("backup.started" | "backup.completed" | "backup.failed" | "backup.deleted" | "restore.started" | "restore.completed" | "restore.failed" | "verification.failed" | "cluster.deleted" | "hook.failed" | "webhook.disabled" | "archiver.behind" | "archiver.stopped")[];
                    description?: string | null;
                    /** @description false stops deliveries; true re-enables a webhook (one disabled after failing for too long, too), clearing disabled_at and disabled_reason */
                    enabled?: boolean;
                };
            };
        };
        responses: {
            /** @description the webhook as changed */
            200: {
                headers: {
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Webhook"];
                };
            };
            400: components["responses"]["BadRequest"];
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            404: components["responses"]["NotFound"];
            413: components["responses"]["ContentTooLarge"];
            415: components["responses"]["UnsupportedMediaType"];
            422: components["responses"]["ValidationFailed"];
            429: components["responses"]["TooManyRequests"];
            503: components["responses"]["Unavailable"];
        };
    };
    testWebhook: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                id: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description the outcome of the attempt (a receiver that failed is still a 200 here: see outcome) */
            200: {
                headers: {
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["WebhookTestResult"];
                };
            };
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            404: components["responses"]["NotFound"];
            422: components["responses"]["ValidationFailed"];
            429: components["responses"]["TooManyRequests"];
            503: components["responses"]["Unavailable"];
        };
    };
    listWebhookDeliveries: {
        parameters: {
            query?: {
                limit?: number;
                cursor?: string;
            };
            header?: never;
            path: {
                id: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description a page of attempts */
            200: {
                headers: {
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": {
                        items: components["schemas"]["WebhookDeliveryAttempt"][];
                        /** @description pass as `cursor` for the next page; null on the last page */
                        next_cursor: string | null;
                    };
                };
            };
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            404: components["responses"]["NotFound"];
            422: components["responses"]["ValidationFailed"];
            429: components["responses"]["TooManyRequests"];
            503: components["responses"]["Unavailable"];
        };
    };
    getLiveness: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description the process is alive */
            200: {
                headers: {
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": {
                        /** @enum {string} */
                        status: "ok";
                    };
                };
            };
            /** @description the request is invalid; `errors` lists every problem with its path */
            422: {
                headers: {
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["Problem"];
                };
            };
        };
    };
    getReadiness: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description every dependency answers */
            200: {
                headers: {
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": {
                        /** @enum {string} */
                        status: "ready";
                        checks: {
                            [key: string]: "ok" | "down";
                        };
                    };
                };
            };
            /** @description the request is invalid; `errors` lists every problem with its path */
            422: {
                headers: {
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["Problem"];
                };
            };
            /** @description a dependency does not answer (named in `checks`) */
            503: {
                headers: {
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["NotReady"];
                };
            };
        };
    };
    getMetrics: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description the metrics */
            200: {
                headers: {
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "text/plain": string;
                };
            };
            /** @description missing or wrong METRICS_TOKEN */
            401: {
                headers: {
                    "WWW-Authenticate": components["headers"]["WWW-Authenticate"];
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["Problem"];
                };
            };
            /** @description METRICS_TOKEN is not configured: /metrics is not served */
            404: {
                headers: {
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["Problem"];
                };
            };
            422: components["responses"]["ValidationFailed"];
            429: components["responses"]["TooManyRequests"];
        };
    };
    issueToken: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/x-www-form-urlencoded": {
                    /** @description client_credentials, the only grant this server supports */
                    grant_type: string;
                    /** @description with client_secret, instead of HTTP Basic */
                    client_id?: string;
                    client_secret?: string;
                    /** @description a role name (viewer, operator, admin) not above the client's role; omitted: the client's role */
                    scope?: string;
                };
            };
        };
        responses: {
            /** @description the access token */
            200: {
                headers: {
                    /** @description the answer carries a credential: never cache it */
                    "Cache-Control"?: "no-store";
                    /** @description for HTTP/1.0 caches (RFC 6749 section 5.1) */
                    Pragma?: "no-cache";
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["TokenResponse"];
                };
            };
            /** @description invalid_request, invalid_scope or unsupported_grant_type (RFC 6749 section 5.2) */
            400: {
                headers: {
                    /** @description the answer carries a credential: never cache it */
                    "Cache-Control"?: "no-store";
                    /** @description for HTTP/1.0 caches (RFC 6749 section 5.1) */
                    Pragma?: "no-cache";
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["OAuthError"];
                };
            };
            /** @description invalid_client: unknown client, wrong secret or no client authentication */
            401: {
                headers: {
                    "WWW-Authenticate": components["headers"]["WWW-Authenticate"];
                    /** @description the answer carries a credential: never cache it */
                    "Cache-Control"?: "no-store";
                    /** @description for HTTP/1.0 caches (RFC 6749 section 5.1) */
                    Pragma?: "no-cache";
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["OAuthError"];
                };
            };
            413: components["responses"]["ContentTooLarge"];
            422: components["responses"]["ValidationFailed"];
            429: components["responses"]["TooManyRequests"];
            /** @description the database is unavailable; try again after Retry-After */
            503: {
                headers: {
                    "Retry-After": components["headers"]["Retry-After"];
                    "RateLimit-Limit": components["headers"]["RateLimit-Limit"];
                    "RateLimit-Remaining": components["headers"]["RateLimit-Remaining"];
                    "RateLimit-Reset": components["headers"]["RateLimit-Reset"];
                    "X-Request-Id": components["headers"]["X-Request-Id"];
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["Problem"];
                };
            };
        };
    };
}
