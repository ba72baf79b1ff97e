#!/usr/bin/env bash
# Runs the proxy benchmark (bench/proxy) from the repository root: pgbench
# straight to the primary, through holdfast's proxy (session and transaction
# pool modes) and through PgBouncer, in one run on this machine; then the
# proxies' memory with many idle clients and the longest stall clients see
# when the primary is killed. Installs what is missing from Debian's
# packages first: pgbouncer, and postgresql-15 (the server and pgbench).
# Arguments go to the benchmark, e.g.
#   bench/proxy.sh -duration 10s -clients 8 -idle 1000
# PostgreSQL and PgBouncer run as the postgres OS user, so this needs root
# (or the postgres user itself). The proxy's churn soak (clients leaving in
# every way, resources sampled for an hour) is bench/proxy-soak.sh.
set -euo pipefail

cd "$(dirname "$0")/.."

SUDO=""
[[ $(id -u) -eq 0 ]] || SUDO=sudo

PGBIN=/usr/lib/postgresql/15/bin
need=()
[[ -x /usr/sbin/pgbouncer ]] || need+=(pgbouncer)
for b in postgres initdb pg_ctl pg_basebackup pg_rewind pgbench; do
  if [[ ! -x $PGBIN/$b ]]; then
    need+=(postgresql-15)
    break
  fi
done

if ((${#need[@]})); then
  echo "proxy.sh: installing ${need[*]}" >&2
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  # The pgbouncer package may start its own service (on 6432, also the
  # default port of holdfast's writer endpoint); the benchmark starts its
  # own PgBouncer per run.
  if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
    $SUDO systemctl disable --now pgbouncer >/dev/null 2>&1 || true
  elif [[ -x /etc/init.d/pgbouncer ]]; then
    $SUDO /etc/init.d/pgbouncer stop >/dev/null 2>&1 || true
  fi
fi

NAME=proxy.sh
# shellcheck source=bench/common.sh
source bench/common.sh
exec go run ./bench/proxy "$@"
