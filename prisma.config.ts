import { defineConfig } from 'prisma/config';

// The schema engine is not needed to generate the client; migrations are applied by src/db/migrate.ts.
export default defineConfig({
  schema: 'prisma/schema.prisma',
  migrations: { path: 'prisma/migrations' },
  datasource: { url: process.env.DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/backups' },
});
