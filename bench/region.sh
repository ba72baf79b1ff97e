#!/usr/bin/env bash
# Runs the global-cluster benchmark (bench/region) from the repository
# root: replication lag to the standby region under pgbench, the write
# pause of region switchovers, and region outages with short and default
# canary settings. Installs the PostgreSQL 15 server (with pgbench) when
# missing. Arguments go to the benchmark, e.g.
#   bench/region.sh -lag 30s -runs 3
set -euo pipefail

cd "$(dirname "$0")/.."

SUDO=""
[[ $(id -u) -eq 0 ]] || SUDO=sudo

PGBIN=/usr/lib/postgresql/15/bin
if [[ ! -x $PGBIN/pgbench || ! -x $PGBIN/postgres ]]; then
  echo "region.sh: installing postgresql-15" >&2
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null
fi

NAME=region.sh
# shellcheck source=bench/common.sh
source bench/common.sh
exec go run ./bench/region "$@"
