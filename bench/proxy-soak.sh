#!/usr/bin/env bash
# Runs the proxy churn soak (bench/proxy soak) from the repository root: a
# single-region holdfast cluster and one `holdfast proxy`, clients connecting
# and leaving in every way (Terminate, FIN, RST, half-close, during the
# login, killed during a query, pipelining then closing) and server backends
# terminated under parked clients, for -duration (default 1h), with the
# proxy's latency, goroutines, file descriptors and memory sampled every
# 10 s; then checks that they stayed flat and that the proxy goes back to
# idle once every client has left. Installs postgresql-15 if it is missing.
# Arguments go to the soak, e.g.
#   bench/proxy-soak.sh -duration 5m -pool-mode transaction
# PostgreSQL runs as the postgres OS user, so this needs root (or the
# postgres user itself).
set -euo pipefail

cd "$(dirname "$0")/.."

SUDO=""
[[ $(id -u) -eq 0 ]] || SUDO=sudo

PGBIN=/usr/lib/postgresql/15/bin
for b in postgres initdb pg_ctl pg_basebackup pg_rewind; do
  if [[ ! -x $PGBIN/$b ]]; then
    echo "proxy-soak.sh: installing postgresql-15" >&2
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null
    break
  fi
done

NAME=proxy-soak.sh
# shellcheck source=bench/common.sh
source bench/common.sh
exec go run ./bench/proxy soak "$@"
