FROM node:20-bookworm-slim
# pg_dump/pg_restore 15 for postgres components; tar for directory archives.
RUN apt-get update && apt-get install -y --no-install-recommends postgresql-client-15 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
COPY prisma ./prisma
COPY prisma.config.ts ./
RUN npm ci --no-audit --no-fund
COPY . .
USER node
CMD ["npm", "start"]
