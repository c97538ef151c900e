#!/usr/bin/env bash
# Start a PostgreSQL server on loopback for the distributed-worker test, and print its SQLAlchemy URL.
# Installs Debian's postgresql when missing. Any failure prints nothing on stdout: the test then skips
# with a message instead of failing the build.
set -euo pipefail
log=${PG_LOG:-/tmp/liqa-postgres.log}
{
  if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q && apt-get install -y -q postgresql
  fi
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  data=/tmp/liqa-pgdata
  if [ ! -f "$data/PG_VERSION" ]; then
    rm -rf "$data" && mkdir -p "$data" && chown postgres "$data"
    su postgres -c "$bin/initdb -D $data -A trust -U postgres"
  fi
  su postgres -c "$bin/pg_ctl -D $data -o '-c listen_addresses=127.0.0.1 -p 55432 -k /tmp' -l $data/server.log -w start" || true
  su postgres -c "$bin/psql -h 127.0.0.1 -p 55432 -U postgres -tc \"SELECT 1 FROM pg_database WHERE datname='liqa'\"" | grep -q 1 \
    || su postgres -c "$bin/createdb -h 127.0.0.1 -p 55432 -U postgres liqa"
} >"$log" 2>&1
echo "postgresql+psycopg2://postgres@127.0.0.1:55432/liqa"
