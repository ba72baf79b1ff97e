# Sourced by the bench scripts that need only PostgreSQL 15 (no peers):
# installs it from Debian's packages if missing, then does what
# bench/common.sh does. Expects NAME (for messages) to be set.

SUDO=""
[[ $(id -u) -eq 0 ]] || SUDO=sudo

PGBIN=/usr/lib/postgresql/15/bin
if [[ ! -x $PGBIN/postgres || ! -x $PGBIN/initdb ]]; then
  echo "$NAME: installing postgresql-15" >&2
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null
fi

# shellcheck source=bench/common.sh
source bench/common.sh
