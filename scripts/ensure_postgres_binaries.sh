#!/usr/bin/env bash
# The review-queue tests start their own throwaway PostgreSQL server (initdb + pg_ctl in a
# temporary folder, unix socket only). This installs the server binaries when they are
# missing (Debian/Ubuntu), so `make test` works on a fresh machine.
set -euo pipefail
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 \
   || [ -n "${SPINELABEL_PG_BINDIR:-}" ]; then
  exit 0
fi
echo "installing the PostgreSQL server binaries (apt-get install postgresql) for the queue tests"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
$SUDO apt-get update -q
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql
