-- Settings the whole deployment shares, one row each. The first is the fingerprint of
-- ENCRYPTION_KEY (never the key): every process compares its key with it at start, so an API
-- and a worker configured with different keys refuse to start instead of failing to decrypt.
CREATE TABLE "service_settings" (
    "name" TEXT NOT NULL,
    "value" TEXT NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "service_settings_pkey" PRIMARY KEY ("name")
);
