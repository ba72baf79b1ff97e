package buffer

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
)

// Handler is the code of one kind of write.
type Handler interface {
	// Validate checks a payload when the write is offered: an error is the
	// client's (HTTP 400) and nothing is enqueued.
	Validate(payload []byte) error
	// Apply applies the write inside the committer's transaction, and
	// must act only through tx: a transaction may be rolled back and the
	// write applied again (only one attempt ever commits). An error
	// wrapping ErrRejected means it can never apply (permanent);
	// PostgreSQL's errors are classified by Transient.
	Apply(ctx context.Context, tx pgx.Tx, w Write) error
}

// Schema is implemented by handlers that need tables: the committer runs
// the statements (idempotent DDL, such as CREATE TABLE IF NOT EXISTS) when
// it connects, before it applies anything.
type Schema interface {
	DDL() []string
}

// BatchApplier is implemented by handlers that can apply many writes in
// one statement. The committer's fast path uses it (all the batch's writes
// of the kind at once); if it fails permanently, the batch is applied again
// write by write with Apply, so that only the bad write fails.
type BatchApplier interface {
	ApplyBatch(ctx context.Context, tx pgx.Tx, ws []Write) error
}

// HandlerFuncs makes a Handler of two functions; a nil Validate accepts
// any payload. Statements in Schema are run as its DDL.
type HandlerFuncs struct {
	ValidateFunc func(payload []byte) error
	ApplyFunc    func(ctx context.Context, tx pgx.Tx, w Write) error
	Schema       []string
}

// DDL implements Schema.
func (h HandlerFuncs) DDL() []string { return h.Schema }

// Validate implements Handler.
func (h HandlerFuncs) Validate(payload []byte) error {
	if h.ValidateFunc == nil {
		return nil
	}
	return h.ValidateFunc(payload)
}

// Apply implements Handler.
func (h HandlerFuncs) Apply(ctx context.Context, tx pgx.Tx, w Write) error {
	return h.ApplyFunc(ctx, tx, w)
}

// Handlers are the kinds of write a buffer accepts and applies, by kind.
// The process wires them (the supervisor, for `holdfast up`); the buffer
// knows no other. One set serves the ingest (validation) and the
// committer (tables, application), so the two cannot disagree.
type Handlers map[string]Handler

// Lookup returns the handler of kind.
func (hs Handlers) Lookup(kind string) (Handler, bool) {
	h, ok := hs[kind]
	return h, ok
}

// NewHandlers joins sets of handlers; a kind in two of them is an error.
func NewHandlers(sets ...Handlers) (Handlers, error) {
	out := Handlers{}
	for _, set := range sets {
		for k, h := range set {
			if k == "" || h == nil {
				return nil, fmt.Errorf("buffer handlers: kind %q without a name or a handler", k)
			}
			if _, dup := out[k]; dup {
				return nil, fmt.Errorf("buffer handlers: kind %q has two handlers", k)
			}
			out[k] = h
		}
	}
	return out, nil
}

// appliedDDL is the table of applied keys: a write and its key are
// committed in the same transaction, so a redelivered write finds its key
// and has no second effect.
const appliedDDL = `CREATE TABLE IF NOT EXISTS holdfast_buffer_applied (
	key          text PRIMARY KEY,
	kind         text NOT NULL,
	accepted_at  timestamptz NOT NULL,
	committed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
	attempts     integer NOT NULL DEFAULT 1
)`

// Migrate creates the committer's table and those of hs.
func Migrate(ctx context.Context, conn *pgx.Conn, hs Handlers) error {
	stmts := []string{appliedDDL}
	kinds := make([]string, 0, len(hs))
	for k := range hs {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		if s, ok := hs[k].(Schema); ok {
			stmts = append(stmts, s.DDL()...)
		}
	}
	if err := RunDDL(ctx, conn, stmts); err != nil {
		return fmt.Errorf("write buffer tables: %w", err)
	}
	return nil
}

// migrationLock is the advisory lock every holdfast migration holds:
// PostgreSQL's CREATE ... IF NOT EXISTS is not safe against itself run
// concurrently (a unique violation in the catalog), and the committer and
// the api server migrate the same tables at start.
const migrationLock = 0x686f6c6466617374 // "holdfast"

// RunDDL runs idempotent DDL statements in one transaction under the
// migration lock.
func RunDDL(ctx context.Context, db interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}, stmts []string) error {
	tx, err := db.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after Commit
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(migrationLock)); err != nil {
		return err
	}
	for _, q := range stmts {
		if _, err := tx.Exec(ctx, q); err != nil {
			return err
		}
	}
	return tx.Commit(ctx)
}

// Outcome is what became of one write of a batch.
type Outcome struct {
	Key       string
	Applied   bool  // applied now
	Duplicate bool  // applied before (a redelivery): no effect
	Err       error // failed permanently (rolled back alone)
}

// applyBatch applies ws in one transaction. It first tries the fast way:
// every write, then all their keys in one statement, with no savepoint.
// If a write fails permanently, that transaction is rolled back and the
// batch is applied again with each write under a savepoint: the failing
// ones are rolled back alone and reported, the others commit. A transient
// error (Transient) aborts the whole batch and is returned: nothing is
// committed, the batch is retried as a whole. The stamp names the server
// incarnation that ran the transaction.
func applyBatch(ctx context.Context, conn *pgx.Conn, hs Handlers, ws []Write) ([]Outcome, serverStamp, error) {
	out, stamp, err := applyBatchFast(ctx, conn, hs, ws)
	if !errors.Is(err, errSlowPath) {
		return out, stamp, err
	}
	return applyBatchSavepoints(ctx, conn, hs, ws)
}

// serverStamp names a server incarnation: its postmaster's start and its
// timeline. A primary restarted in place, or another member promoted, has
// another stamp.
type serverStamp struct {
	started  string
	timeline string
}

func (s serverStamp) String() string { return s.started + " timeline " + s.timeline }

// errSlowPath says a write failed permanently in the fast path.
var errSlowPath = errors.New("a write failed permanently: apply under savepoints")

// beginBatch starts the transaction of a batch and returns the server's
// stamp.
func beginBatch(ctx context.Context, conn *pgx.Conn) (pgx.Tx, serverStamp, error) {
	var stamp serverStamp
	tx, err := conn.Begin(ctx)
	if err != nil {
		return nil, stamp, err
	}
	if err := tx.QueryRow(ctx, `SELECT pg_postmaster_start_time()::text, substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)`).Scan(&stamp.started, &stamp.timeline); err != nil {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return nil, stamp, err
	}
	return tx, stamp, nil
}

// durabilityBarrier makes a transaction that found writes applied before,
// and applies nothing itself, write WAL all the same (a new version of one
// of their keys' rows), so that its COMMIT waits for the synchronous
// standbys: that wait is what makes those earlier commits durable too. A
// transaction that writes no WAL commits without waiting. Without it, a
// batch found applied on a primary restarted in place after a crash (whose
// recovery made visible commits no standby had confirmed) would be
// acknowledged, and lost at the next failover.
func durabilityBarrier(ctx context.Context, tx pgx.Tx, key string) error {
	_, err := tx.Exec(ctx, "UPDATE holdfast_buffer_applied SET attempts = attempts WHERE key = $1", key)
	return err
}

// claimKeys records the keys of ws as applied (the first write of each)
// and returns those recorded now: the others were applied before (or are
// being applied by a concurrent transaction that commits first). Each key
// is one probe of the table's primary key, whatever the table holds: a
// lookup of many keys by "key = ANY($1)" was planned as a sequential scan
// comparing every row with every key (a generic plan, whose array is not
// hashed), a second per group of 1,000 writes at 100,000 rows.
func claimKeys(ctx context.Context, tx pgx.Tx, ws []Write) (map[string]bool, error) {
	var (
		keys, kinds []string
		accepted    []time.Time
		attempts    []int32
	)
	first := make(map[string]bool, len(ws))
	for _, w := range ws {
		if first[w.Key] {
			continue
		}
		first[w.Key] = true
		keys, kinds = append(keys, w.Key), append(kinds, w.Kind)
		accepted, attempts = append(accepted, w.AcceptedAt), append(attempts, int32(w.Attempts+1))
	}
	rows, err := tx.Query(ctx, `INSERT INTO holdfast_buffer_applied (key, kind, accepted_at, attempts)
		SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::int[])
		ON CONFLICT (key) DO NOTHING RETURNING key`, keys, kinds, accepted, attempts)
	if err != nil {
		return nil, err
	}
	claimed := make(map[string]bool, len(keys))
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			rows.Close()
			return nil, err
		}
		claimed[k] = true
	}
	rows.Close()
	return claimed, rows.Err()
}

func applyBatchFast(ctx context.Context, conn *pgx.Conn, hs Handlers, ws []Write) ([]Outcome, serverStamp, error) {
	tx, stamp, err := beginBatch(ctx, conn)
	if err != nil {
		return nil, stamp, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after Commit
	claimed, err := claimKeys(ctx, tx, ws)
	if err != nil {
		if Transient(err) {
			return nil, stamp, err
		}
		return nil, stamp, errSlowPath
	}
	out := make([]Outcome, len(ws))
	applied := 0
	// Writes of a kind whose handler applies many at once are grouped.
	groups := map[string][]Write{}
	var kindOrder []string
	for i, w := range ws {
		out[i].Key = w.Key
		if !claimed[w.Key] {
			out[i].Duplicate = true
			continue
		}
		h, ok := hs.Lookup(w.Kind)
		if !ok {
			return nil, stamp, errSlowPath
		}
		delete(claimed, w.Key) // the same key twice in a batch applies once
		out[i].Applied = true
		applied++
		if _, ok := h.(BatchApplier); ok {
			if _, seen := groups[w.Kind]; !seen {
				kindOrder = append(kindOrder, w.Kind)
			}
			groups[w.Kind] = append(groups[w.Kind], w)
			continue
		}
		if err := h.Apply(ctx, tx, w); err != nil {
			if Transient(err) {
				return nil, stamp, err
			}
			return nil, stamp, errSlowPath
		}
	}
	for _, k := range kindOrder {
		h := hs[k]
		if err := h.(BatchApplier).ApplyBatch(ctx, tx, groups[k]); err != nil {
			if Transient(err) {
				return nil, stamp, err
			}
			return nil, stamp, errSlowPath
		}
	}
	if applied == 0 {
		if err := durabilityBarrier(ctx, tx, ws[0].Key); err != nil {
			return nil, stamp, err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, stamp, err
	}
	return out, stamp, nil
}

// barrierIfOnlyDuplicates runs the durability barrier when the batch
// found writes applied before and applied none itself.
func barrierIfOnlyDuplicates(ctx context.Context, tx pgx.Tx, out []Outcome) error {
	dup := ""
	for _, o := range out {
		if o.Applied {
			return nil
		}
		if o.Duplicate && dup == "" {
			dup = o.Key
		}
	}
	if dup == "" {
		return nil
	}
	return durabilityBarrier(ctx, tx, dup)
}

func applyBatchSavepoints(ctx context.Context, conn *pgx.Conn, hs Handlers, ws []Write) ([]Outcome, serverStamp, error) {
	tx, stamp, err := beginBatch(ctx, conn)
	if err != nil {
		return nil, stamp, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after Commit
	out := make([]Outcome, len(ws))
	for i, w := range ws {
		out[i].Key = w.Key
		if _, err := tx.Exec(ctx, "SAVEPOINT holdfast_write"); err != nil {
			return nil, stamp, err
		}
		claimed, err := claimKeys(ctx, tx, ws[i:i+1])
		if err == nil && claimed[w.Key] {
			if h, ok := hs.Lookup(w.Kind); !ok {
				err = fmt.Errorf("%w: no handler for kind %q", ErrRejected, w.Kind)
			} else {
				err = h.Apply(ctx, tx, w)
			}
		}
		if err != nil {
			if Transient(err) {
				return nil, stamp, err
			}
			if _, rerr := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT holdfast_write"); rerr != nil {
				return nil, stamp, rerr
			}
			out[i].Err = err
			continue
		}
		if _, err := tx.Exec(ctx, "RELEASE SAVEPOINT holdfast_write"); err != nil {
			return nil, stamp, err
		}
		if claimed[w.Key] {
			out[i].Applied = true
		} else {
			out[i].Duplicate = true // applied before, or earlier in this batch
		}
	}
	if err := barrierIfOnlyDuplicates(ctx, tx, out); err != nil {
		return nil, stamp, err
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, stamp, err
	}
	return out, stamp, nil
}
