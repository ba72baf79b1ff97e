package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	osproc "github.com/holdfast/holdfast/internal/proc"
)

// connConfig is a superuser connection over the unix socket in ConfDir/run.
// Every setting libpq-style environment variables could change is given
// explicitly, so the agent's environment cannot redirect it.
func (i *Instance) connConfig() (*pgx.ConnConfig, error) {
	ci := ConnInfo{
		Host:           i.SocketDir(),
		Port:           i.cfg.Port,
		User:           i.cfg.SuperUser,
		DBName:         "postgres",
		AppName:        "holdfast-agent",
		ConnectTimeout: 5 * time.Second,
	}
	cfg, err := pgx.ParseConfig(ci.String() + " sslmode=disable target_session_attrs=any")
	if err != nil {
		return nil, fmt.Errorf("connection config: %w", err)
	}
	return cfg, nil
}

// Conn opens a new superuser connection over the unix socket, for callers
// that run their own SQL. The caller closes it.
func (i *Instance) Conn(ctx context.Context) (*pgx.Conn, error) {
	cfg, err := i.connConfig()
	if err != nil {
		return nil, err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", i.SocketDir(), err)
	}
	return conn, nil
}

// Promote ends recovery with pg_promote and returns once the server accepts
// writes. It is a no-op on a primary. Waiting is bounded by ctx (60s if ctx
// has no deadline).
func (i *Instance) Promote(ctx context.Context) error {
	conn, err := i.Conn(ctx)
	if err != nil {
		return fmt.Errorf("promote: %w", err)
	}
	defer conn.Close(context.Background())
	var inRecovery bool
	if err := conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery); err != nil {
		return fmt.Errorf("promote: %w", err)
	}
	if !inRecovery {
		i.log.Info("promote: already a primary")
		i.forgetStandby()
		return nil
	}
	wait := 60
	if dl, ok := ctx.Deadline(); ok {
		wait = int(math.Ceil(time.Until(dl).Seconds()))
		wait = max(1, min(wait, 3600))
	}
	i.log.Info("promoting")
	start := time.Now()
	var ok bool
	if err := conn.QueryRow(ctx, "SELECT pg_promote(true, $1)", wait).Scan(&ok); err != nil {
		return fmt.Errorf("promote: %w", err)
	}
	if !ok {
		return fmt.Errorf("promote: promotion did not complete within %ds", wait)
	}
	// pg_promote(true) already waited for the end of recovery; checking
	// again costs one round trip and guards against a server that returned
	// early.
	for {
		if err := conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery); err != nil {
			return fmt.Errorf("promote: %w", err)
		}
		if !inRecovery {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("promote: still in recovery: %w", ctx.Err())
		case <-time.After(pollInterval):
		}
	}
	i.forgetStandby()
	i.log.Info("promoted", "took", time.Since(start))
	return nil
}

// forgetStandby records that the server is now a primary: the server removed
// standby.signal itself, and Start must not put it back from Settings
// written before the promotion.
func (i *Instance) forgetStandby() {
	i.mu.Lock()
	if i.settings != nil {
		s := *i.settings
		s.Standby = false
		i.settings = &s
	}
	i.mu.Unlock()
}

// Checkpoint runs CHECKPOINT (a restartpoint on a standby).
func (i *Instance) Checkpoint(ctx context.Context) error {
	conn, err := i.Conn(ctx)
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "CHECKPOINT"); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return nil
}

// EnsureReplicationRole creates the replication role (REPLICATION LOGIN) if
// absent and (re)sets its password, and resets the superuser's password so
// SCRAM over TCP (pg_rewind) uses the configured one. Run it on the primary.
// Passwords are hashed by the server (password_encryption=scram-sha-256).
func (i *Instance) EnsureReplicationRole(ctx context.Context) error {
	if err := i.ensureRole(ctx, i.cfg.ReplUser, i.cfg.ReplPassword, "REPLICATION LOGIN"); err != nil {
		return fmt.Errorf("ensure replication role: %w", err)
	}
	if err := i.ensureRole(ctx, i.cfg.SuperUser, i.cfg.SuperPassword, "SUPERUSER LOGIN"); err != nil {
		return fmt.Errorf("ensure superuser password: %w", err)
	}
	return nil
}

// EnsureRole creates a LOGIN role if absent and sets its password (empty:
// no password) and CREATEDB attribute. Run it on the primary.
func (i *Instance) EnsureRole(ctx context.Context, name, password string, createDB bool) error {
	attrs := "LOGIN NOCREATEDB"
	if createDB {
		attrs = "LOGIN CREATEDB"
	}
	if err := i.ensureRole(ctx, name, password, attrs); err != nil {
		return fmt.Errorf("ensure role %s: %w", name, err)
	}
	return nil
}

func (i *Instance) ensureRole(ctx context.Context, name, password, attrs string) error {
	if name == "" {
		return errors.New("empty role name")
	}
	pw := "NULL"
	if password != "" {
		var err error
		if pw, err = quoteLiteral(password); err != nil {
			return fmt.Errorf("password: %w", err)
		}
	}
	conn, err := i.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.Background())
	// Keep the password out of the server log even if the statement fails
	// or statement logging is on.
	if _, err := tx.Exec(ctx, "SET LOCAL log_statement = 'none'; SET LOCAL log_min_error_statement = 'panic'"); err != nil {
		return err
	}
	var exists bool
	if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", name).Scan(&exists); err != nil {
		return err
	}
	verb := "CREATE"
	if exists {
		verb = "ALTER"
	}
	if _, err := tx.Exec(ctx, fmt.Sprintf("%s ROLE %s WITH %s PASSWORD %s", verb, quoteIdent(name), attrs, pw)); err != nil {
		return fmt.Errorf("%s role: %w", verb, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	if !exists {
		i.log.Info("created role", "role", name)
	}
	return nil
}

// EnsureDatabase creates database name owned by owner if absent, and fixes
// its owner if it differs. Empty owner means the superuser. Run it on the
// primary.
func (i *Instance) EnsureDatabase(ctx context.Context, name, owner string) error {
	if name == "" {
		return errors.New("ensure database: empty name")
	}
	if owner == "" {
		owner = i.cfg.SuperUser
	}
	conn, err := i.Conn(ctx)
	if err != nil {
		return fmt.Errorf("ensure database %s: %w", name, err)
	}
	defer conn.Close(context.Background())
	var cur string
	err = conn.QueryRow(ctx, "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = $1", name).Scan(&cur)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		// CREATE DATABASE cannot run in a transaction block, and so not in
		// one with the existence check; a concurrent creator makes it fail
		// with duplicate_database, which is reported.
		if _, err := conn.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s OWNER %s", quoteIdent(name), quoteIdent(owner))); err != nil {
			return fmt.Errorf("ensure database %s: %w", name, err)
		}
		i.log.Info("created database", "database", name, "owner", owner)
	case err != nil:
		return fmt.Errorf("ensure database %s: %w", name, err)
	case cur != owner:
		if _, err := conn.Exec(ctx, fmt.Sprintf("ALTER DATABASE %s OWNER TO %s", quoteIdent(name), quoteIdent(owner))); err != nil {
			return fmt.Errorf("ensure database %s: %w", name, err)
		}
	}
	return nil
}

// RestartWalReceiver stops the running WAL receiver, if there is one, and
// says whether there was. The startup process then starts a new one (after
// wal_retrieve_retry_interval) with the primary_conninfo in force, or none
// if it is empty.
//
// A reload alone changes primary_conninfo for the next receiver: the
// running one is told to restart only if the startup process is streaming
// at that moment. One caught between WAL sources (at a timeline switch,
// say, just after a failover) keeps its connection, and goes on streaming
// from the previous upstream with the new setting in force.
func (i *Instance) RestartWalReceiver(ctx context.Context) (bool, error) {
	p := i.current()
	if p == nil {
		return false, fmt.Errorf("restart WAL receiver: %w", ErrNotRunning)
	}
	ctx, cancel := withTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := i.Conn(ctx)
	if err != nil {
		return false, fmt.Errorf("restart WAL receiver: %w", err)
	}
	defer conn.Close(context.Background())
	var pid int32
	err = conn.QueryRow(ctx, "SELECT pid FROM pg_stat_wal_receiver WHERE pid IS NOT NULL").Scan(&pid)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("restart WAL receiver: %w", err)
	}
	// The pid came from the server; make sure it is still its child before
	// signalling it (it may have exited and the number been reused).
	if pp, ok := osproc.Parent(int(pid)); !ok || pp != p.pid {
		return false, nil
	}
	if err := syscall.Kill(int(pid), syscall.SIGTERM); err != nil {
		return false, fmt.Errorf("restart WAL receiver (pid %d): %w", pid, err)
	}
	i.log.Info("WAL receiver stopped for a restart", "pid", pid)
	return true, nil
}

// Incarnation reads, on a primary, the next transaction id it will hand out
// (the xmax of a new snapshot: with no transaction running, the first id
// not yet given out) and when its postmaster started, in Unix microseconds.
// Read just after the server became writable, before any client ran a
// transaction, the id is the first of this incarnation.
func (i *Instance) Incarnation(ctx context.Context) (firstXID uint64, startedUS int64, err error) {
	ctx, cancel := withTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := i.Conn(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("incarnation: %w", err)
	}
	defer conn.Close(context.Background())
	var xid string
	err = conn.QueryRow(ctx, `SELECT pg_snapshot_xmax(pg_current_snapshot())::text,
		(extract(epoch FROM pg_postmaster_start_time()) * 1000000)::bigint`).Scan(&xid, &startedUS)
	if err != nil {
		return 0, 0, fmt.Errorf("incarnation: %w", err)
	}
	if firstXID, err = strconv.ParseUint(xid, 10, 64); err != nil {
		return 0, 0, fmt.Errorf("incarnation: xid %q: %w", xid, err)
	}
	return firstXID, startedUS, nil
}
