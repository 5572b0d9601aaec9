-- OAuth2 client-credentials clients (SPEC section 9). Like api_keys, only a sha256 of the
-- secret is stored (it carries 256 random bits, so a fast hash suffices). A deleted client keeps
-- its row (deleted_at) so audit entries still name it; the access-token check reads
-- deleted_at on every request, which is what makes a deletion reject live tokens at once.
CREATE TABLE "api_clients" (
    "id" UUID NOT NULL,
    "tenant_id" UUID NOT NULL,
    "name" TEXT NOT NULL,
    "role" "Role" NOT NULL,
    "secret_hash" TEXT NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "last_used_at" TIMESTAMPTZ(3),
    "deleted_at" TIMESTAMPTZ(3),

    CONSTRAINT "api_clients_pkey" PRIMARY KEY ("id")
);

CREATE UNIQUE INDEX "api_clients_secret_hash_key" ON "api_clients"("secret_hash");
CREATE INDEX "api_clients_tenant_id_created_at_idx" ON "api_clients"("tenant_id", "created_at");

ALTER TABLE "api_clients" ADD CONSTRAINT "api_clients_tenant_id_fkey" FOREIGN KEY ("tenant_id") REFERENCES "tenants"("id") ON DELETE CASCADE ON UPDATE CASCADE;
