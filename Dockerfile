FROM node:20-bookworm-slim
# pg_dump/pg_restore 15 (and psql) for postgres components. Directory trees are walked and
# restored by the service itself (src/repo/tree-*.ts); zstd comes prebuilt with npm ci.
RUN apt-get update && apt-get install -y --no-install-recommends postgresql-client-15 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# zstd and the seal threads allocate natively from several threads: fewer glibc arenas keep the
# resident set of a backup ~120 MB smaller (bench:backup line (f)).
ENV MALLOC_ARENA_MAX=2
COPY package.json package-lock.json ./
COPY prisma ./prisma
COPY prisma.config.ts ./
COPY vendor ./vendor
RUN npm ci --no-audit --no-fund
COPY . .
USER node
CMD ["npm", "start"]
