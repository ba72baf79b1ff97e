#!/usr/bin/env bash
# Runs the durable write buffer benchmark (bench/buffer) from the repository
# root: plain JetStream publishes fsynced one by one (the baseline), then 64
# HTTP clients posting to the buffer, then the committer's drain into
# PostgreSQL, in one run; the load runs in separate processes. Installs
# postgresql-15 if missing; run as root, PostgreSQL runs as the postgres OS
# user. Arguments go to the benchmark: bench/buffer.sh -duration 10s -json
set -euo pipefail

cd "$(dirname "$0")/.."

NAME=buffer.sh
# shellcheck source=bench/postgres.sh
source bench/postgres.sh
exec go run ./bench/buffer "$@"
