#!/usr/bin/env bash
# Runs the ToDo API benchmark (bench/api) from the repository root: a whole
# `holdfast up` deployment on free ports, then GET by id, POST direct and
# POST buffered with 64 HTTP clients each (OAuth2 tokens, load in separate
# processes), reporting requests/s, latency and CPU shares. Installs
# postgresql-15 if missing; run as root. Arguments go to the benchmark:
#   bench/api.sh -duration 10s -json
set -euo pipefail

cd "$(dirname "$0")/.."

NAME=api.sh
# shellcheck source=bench/postgres.sh
source bench/postgres.sh
exec go run ./bench/api "$@"
