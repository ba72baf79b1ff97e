#!/usr/bin/env bash
# Runs the durable write buffer benchmark (bench/buffer) from the repository
# root: plain JetStream publishes fsynced one by one (the baseline), then 64
# HTTP clients posting to the buffer, then the committer's drain into
# PostgreSQL, in one run; the load runs in separate processes. Installs
# postgresql-15 if missing; run as root, PostgreSQL runs as the postgres OS
# user. Arguments go to the benchmark: bench/buffer.sh -duration 10s -json
set -euo pipefail

cd "$(dirname "$0")/.."

SUDO=""
[[ $(id -u) -eq 0 ]] || SUDO=sudo

PGBIN=/usr/lib/postgresql/15/bin
if [[ ! -x $PGBIN/postgres || ! -x $PGBIN/initdb ]]; then
  echo "buffer.sh: installing postgresql-15" >&2
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null
fi

NAME=buffer.sh
# shellcheck source=bench/common.sh
source bench/common.sh
exec go run ./bench/buffer "$@"
