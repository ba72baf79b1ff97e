#!/usr/bin/env bash
# Installs what the dashboard's browser test needs, only when missing:
# Node.js and npm, Debian's chromium, and the UI's npm packages
# (playwright-core, esbuild, uplot) exactly as its lockfile says. Playwright
# drives Debian's chromium: no browser is downloaded by a test tool.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
[[ -x ${CHROMIUM:-/usr/bin/chromium} ]] || need+=(chromium)
if ((${#need[@]})); then
  echo "install-ui-deps: installing ${need[*]}" >&2
  SUDO=""
  [[ $(id -u) -eq 0 ]] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

cd internal/web/ui
if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  echo "install-ui-deps: npm ci in internal/web/ui" >&2
  npm ci --no-audit --no-fund --loglevel=error
fi
