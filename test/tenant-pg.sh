#!/usr/bin/env bash
# The tests' second PostgreSQL server: tenants' databases live there, never on the service's own
# server. Idempotent and safe to run concurrently (one flock per port): it starts the server, or
# finds it running, and prints its URL. Trust auth on 127.0.0.1, except members of
# bk_password_users, who need their password (so "authentication failed" can be tested).
# PostgreSQL refuses to run as root: as root, initdb and pg_ctl run as the postgres OS user.
set -euo pipefail

PORT="${TENANT_PG_PORT:-55432}"
DIR="/tmp/bk-tenant-pg-${PORT}"
BIN="${PG_BIN:-}"
if [ -z "$BIN" ]; then
  if [ -x /usr/lib/postgresql/15/bin/pg_ctl ]; then BIN=/usr/lib/postgresql/15/bin
  else BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)"; fi
fi
if [ -z "$BIN" ] || [ ! -x "$BIN/pg_ctl" ]; then
  echo "tenant-pg: no PostgreSQL server binaries (set PG_BIN)" >&2
  exit 3
fi

as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

ready() { "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" 2>/dev/null; }

# Replication connections too (point-in-time recovery streams WAL, SPEC section 13).
HBA='local all all trust
local replication all trust
host all +bk_password_users 127.0.0.1/32 scram-sha-256
host all +bk_password_users ::1/128 scram-sha-256
host replication +bk_password_users 127.0.0.1/32 scram-sha-256
host all all 127.0.0.1/32 trust
host all all ::1/128 trust
host replication all 127.0.0.1/32 trust
host replication all ::1/128 trust'

exec 9>"/tmp/bk-tenant-pg-${PORT}.lock"
flock 9

if ! ready; then
  mkdir -p "$DIR"
  [ "$(id -u)" = 0 ] && chown postgres: "$DIR"
  if [ ! -f "$DIR/data/PG_VERSION" ]; then
    rm -rf "$DIR/data"
    as_pg "$BIN/initdb" -D "$DIR/data" -U postgres -A trust --no-sync -E UTF8 --locale=C >"$DIR/initdb.log" 2>&1
    printf '%s\n' "$HBA" | as_pg tee "$DIR/data/pg_hba.conf" >/dev/null
  fi
  as_pg "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 \
    -o "-p $PORT -k $DIR -c listen_addresses=127.0.0.1 -c wal_level=replica -c max_wal_senders=20 -c max_replication_slots=50 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
    start >/dev/null 9>&- # the server must not inherit the lock
fi

# A server started by an older version of this script: give it the replication rules.
if ! grep -q '^host replication all 127.0.0.1/32 trust' "$DIR/data/pg_hba.conf" 2>/dev/null; then
  printf '%s\n' "$HBA" | as_pg tee "$DIR/data/pg_hba.conf" >/dev/null
  as_pg "$BIN/pg_ctl" -D "$DIR/data" reload >/dev/null
fi

psql_() { "$BIN/psql" -X -q -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 "$@"; }
psql_ -c "DO \$\$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bk_password_users') THEN CREATE ROLE bk_password_users NOLOGIN; END IF;
EXCEPTION WHEN unique_violation OR duplicate_object THEN NULL; END \$\$;" >/dev/null
echo "postgresql://postgres@127.0.0.1:${PORT}"
