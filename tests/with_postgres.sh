#!/usr/bin/env bash
# Run a command against a throwaway PostgreSQL server: `tests/with_postgres.sh CMD ARGS...`.
# Starts a cluster in a temp folder on a free loopback port, exports TESSERA_TEST_POSTGRES for the
# test fixtures (each test then indexes into a fresh database of it), runs CMD, and removes the
# cluster again; exits with CMD's status.
set -euo pipefail

bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
if [ -z "$bin" ]; then
  echo "PostgreSQL server binaries not found (Debian package postgresql)" >&2
  exit 1
fi
dir=$(mktemp -d /tmp/tessera-pg.XXXXXX)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# initdb refuses to run as root: the server runs as the postgres user then.
as_owner() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown postgres "$dir"
stop() {
  as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap stop EXIT
as_owner "$bin/initdb" -D "$dir/data" -A trust -U postgres >"$dir/initdb.log"
as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
  -o "-h 127.0.0.1 -p $port -k $dir -F -c max_connections=200" start >/dev/null
export TESSERA_TEST_POSTGRES="postgresql://postgres@127.0.0.1:$port/"
"$@"
