#!/usr/bin/env bash
# Installs what holdfast needs to run and test on Debian/Ubuntu, only when
# missing: PostgreSQL 15 server binaries, and iproute2 (the lab hosts of the
# chaos suite are network namespaces). Go must already be installed
# (go.mod names the version).
set -euo pipefail

PGBIN=${HOLDFAST_PG_BIN:-/usr/lib/postgresql/15/bin}
need=()
for b in postgres initdb pg_basebackup pg_rewind pg_controldata; do
  [[ -x "$PGBIN/$b" ]] || need=(postgresql-15)
done
command -v psql >/dev/null 2>&1 || need+=(postgresql-client-15)
command -v ip >/dev/null 2>&1 || need+=(iproute2)

if ((${#need[@]})); then
  echo "install-deps: installing ${need[*]}" >&2
  SUDO=""
  [[ $(id -u) -eq 0 ]] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # The Debian package starts a default cluster on 5432; holdfast runs its own.
  if command -v pg_ctlcluster >/dev/null 2>&1; then
    $SUDO pg_ctlcluster 15 main stop 2>/dev/null || true
  fi
fi

if ! command -v go >/dev/null 2>&1 && [[ ! -x /usr/local/go/bin/go ]]; then
  echo "install-deps: Go is not installed; install Go $(sed -n 's/^go //p' "$(dirname "$0")/../go.mod") from https://go.dev/dl/" >&2
  exit 1
fi
if [[ $(id -u) -eq 0 ]] && ! id postgres >/dev/null 2>&1; then
  echo "install-deps: running as root needs the 'postgres' OS user (created by the postgresql-15 package)" >&2
  exit 1
fi
