#!/usr/bin/env bash
# Runs the compound-fault benchmark (bench/compound) from the repository
# root: `holdfast up`'s default two regions under write load on the buffer
# and proxy paths, faults back to back on the primary (kill -9 of the
# postmaster, kill -9 of agent and postmaster, SIGSTOP of agent and
# postmaster), then reconciles every acknowledged write and the buffer's
# counters, and compares the drain after the faults with a steady drain
# measured in the same run. Installs the PostgreSQL 15 server when
# missing. Arguments go to the benchmark, e.g.
#   bench/compound.sh -runs 20 -faults 10 -every 4s
set -euo pipefail

cd "$(dirname "$0")/.."

SUDO=""
[[ $(id -u) -eq 0 ]] || SUDO=sudo

PGBIN=/usr/lib/postgresql/15/bin
if [[ ! -x $PGBIN/postgres ]]; then
  echo "compound.sh: installing postgresql-15" >&2
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null
fi

NAME=compound.sh
# shellcheck source=bench/common.sh
source bench/common.sh
exec go run ./bench/compound "$@"
