FROM node:20-bookworm-slim
# pg_dump/pg_restore 15 (and psql) for postgres components. Directory trees are walked and
# restored by the service itself (src/repo/tree-*.ts); zstd comes prebuilt with npm ci.
# redis-server: the scratch server a redis restore loads its snapshot into; mariadb-client:
# mariadb-dump and mariadb for mysql components. postgresql-15: the server binaries of the scratch
# instances point-in-time restores replay in (run as its `postgres` user, PITR_SCRATCH_USER);
# pg_basebackup and pg_receivewal come with the client.
RUN apt-get update && apt-get install -y --no-install-recommends postgresql-client-15 postgresql-15 redis-server mariadb-client ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# zstd and the seal threads allocate natively from several threads: fewer glibc arenas, and
# buffers over 128 KiB mapped of their own (returned at once when freed), keep the resident set
# of a backup well over 100 MB smaller (bench:backup line (f)). npm start sets the same defaults.
ENV MALLOC_ARENA_MAX=2 MALLOC_MMAP_THRESHOLD_=131072
COPY package.json package-lock.json ./
COPY prisma ./prisma
COPY prisma.config.ts ./
COPY vendor ./vendor
# The console's build needs the sources (web/, src/client/): install without it, build after the copy.
RUN npm ci --no-audit --no-fund --ignore-scripts && npm run -s generate
COPY . .
RUN npm run -s build:console && npm run -s build:service
USER node
CMD ["npm", "start"]
