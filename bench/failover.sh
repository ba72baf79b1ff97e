#!/usr/bin/env bash
# Runs the failover benchmark (bench/failover) from the repository root,
# comparing holdfast with Patroni on this machine. Installs the peers from
# Debian's packages first, only when missing: Patroni, etcd and the
# PostgreSQL 15 server. Arguments go to the benchmark, e.g.
#   bench/failover.sh -runs 3 -targets patroni -scenarios switchover
# The Patroni targets start Patroni and PostgreSQL as the postgres OS user,
# so they need root (or the postgres user itself).
set -euo pipefail

cd "$(dirname "$0")/.."

SUDO=""
[[ $(id -u) -eq 0 ]] || SUDO=sudo

PGBIN=/usr/lib/postgresql/15/bin
need=()
[[ -x /usr/bin/patroni ]] || need+=(patroni)
[[ -x /usr/bin/etcd ]] || need+=(etcd-server)
for b in postgres initdb pg_ctl pg_basebackup pg_rewind; do
  if [[ ! -x $PGBIN/$b ]]; then
    need+=(postgresql-15)
    break
  fi
done

if ((${#need[@]})); then
  echo "failover.sh: installing ${need[*]}" >&2
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  # The packages may start their own services where an init system runs
  # them; the benchmark starts its own etcd, Patroni and PostgreSQL.
  if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
    for s in patroni etcd; do
      $SUDO systemctl disable --now "$s" >/dev/null 2>&1 || true
    done
  fi
fi

NAME=failover.sh
# shellcheck source=bench/common.sh
source bench/common.sh
exec go run ./bench/failover -targets holdfast,patroni "$@"
