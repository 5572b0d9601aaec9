// Stand-in for @prisma/streams-local (see docs/dependencies.md). The real package needs
// Node >= 22 (it opens node:sqlite); only `prisma dev` (a local Prisma Postgres) imports it,
// and this project never runs `prisma dev`. Anything that does reach it gets a clear error.
const message =
  '@prisma/streams-local is replaced by a stub in this project (it needs Node >= 22); ' +
  '`prisma dev` is not supported here. See docs/dependencies.md.';

export async function startLocalDurableStreamsServer() {
  throw new Error(message);
}

export default { startLocalDurableStreamsServer };
