# Sourced by the bench scripts after they have installed their packages:
# stops the default cluster the postgresql-15 package starts (on 5432), and
# checks that the postgres OS user exists. Expects NAME (for messages) and
# SUDO to be set.

# The postgresql package creates and starts a default cluster on 5432.
if command -v pg_lsclusters >/dev/null 2>&1 &&
  pg_lsclusters --no-header 2>/dev/null | awk '$1 == 15 && $2 == "main" && $4 == "online" { found = 1 } END { exit !found }'; then
  echo "$NAME: stopping the default PostgreSQL 15 cluster (main)" >&2
  $SUDO pg_ctlcluster 15 main stop || true
  # "manual": not started again at boot.
  if [[ -f /etc/postgresql/15/main/start.conf ]]; then
    echo manual | $SUDO tee /etc/postgresql/15/main/start.conf >/dev/null
  fi
fi

if ! id postgres >/dev/null 2>&1; then
  echo "$NAME: the postgres OS user is missing (the postgresql-15 package creates it)" >&2
  exit 1
fi

export PATH=/usr/local/go/bin:$PATH
