package buffer

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// ErrRejected wraps a handler's verdict that a write can never apply (bad
// payload): permanent, it counts toward the dead-letter limit.
var ErrRejected = errors.New("write rejected")

// Transient reports whether applying a write failed for a reason that
// passes by itself: the database unreachable or failing over, a
// serialization conflict, a lock timeout, resources short. Those are retried
// without limit and never count toward the dead-letter limit. Everything
// else (bad data, constraint violations, errors in the handler's SQL,
// ErrRejected) is permanent.
func Transient(err error) bool {
	if err == nil || errors.Is(err, ErrRejected) {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return transientSQLState(pgErr.Code)
	}
	var netErr net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr):
		return true
	}
	// Connection-level failures surface as pgconn errors without a
	// SQLSTATE (lost connection, failed connect): not the write's fault.
	var connectErr *pgconn.ConnectError
	if errors.As(err, &connectErr) || pgconn.SafeToRetry(err) || pgconn.Timeout(err) {
		return true
	}
	return isConnectionLoss(err)
}

// transientSQLState classifies a PostgreSQL error code.
func transientSQLState(code string) bool {
	switch code {
	case "40001", // serialization_failure (also what holdfast's proxy says after a failover)
		"40P01", // deadlock_detected
		"25006", // read_only_sql_transaction: a demoted primary, during failover
		"55P03", // lock_not_available
		"57P01", // admin_shutdown
		"57P02", // crash_shutdown
		"57P03", // cannot_connect_now (starting up, or the proxy holding with no primary)
		"08007": // transaction_resolution_unknown: the key table decides on retry
		return true
	}
	if len(code) == 5 {
		switch code[:2] {
		case "08", // connection exception
			"53", // insufficient resources
			"58": // system error (I/O)
			return true
		}
	}
	return false
}

// isConnectionLoss recognises a connection that went away under a
// statement, which pgx reports as the read's error.
func isConnectionLoss(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)
}

// Backoff is the wait before retry number attempt (1-based) of a write that
// failed transiently: exponential from base, capped, with full jitter so
// that writers retrying after a failover do not all arrive at once.
func Backoff(attempt int, base, ceiling time.Duration) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	d := base
	for i := 1; i < attempt && d < ceiling; i++ {
		d *= 2
	}
	d = min(d, ceiling)
	return d/2 + rand.N(d/2+1)
}

// isUndefinedTable reports PostgreSQL's 42P01 (the committer has not
// created its table yet: nothing was committed).
func isUndefinedTable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "42P01"
}
