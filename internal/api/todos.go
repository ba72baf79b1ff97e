package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/holdfast/holdfast/internal/buffer"
)

// Todo is one row of table todos.
type Todo struct {
	ID        int64     `json:"id"`
	Task      string    `json:"task"`
	Status    string    `json:"status"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	Version   int64     `json:"version"`
}

// Todo statuses.
var todoStatuses = map[string]bool{"todo": true, "wip": true, "done": true}

// Task length bounds, in characters.
const (
	minTaskChars = 1
	maxTaskChars = 200
)

// todosDDL is the migration run at start-up. The CHECKs repeat the API's
// validation so that no other writer can store what the API would refuse.
var todosDDL = []string{
	`CREATE TABLE IF NOT EXISTS todos (
	id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	task       text NOT NULL CHECK (char_length(task) BETWEEN 1 AND 200),
	status     text NOT NULL DEFAULT 'todo' CHECK (status IN ('todo', 'wip', 'done')),
	created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
	updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
	version    bigint NOT NULL DEFAULT 1
)`,
	`CREATE INDEX IF NOT EXISTS todos_status_id ON todos (status, id)`,
	// One row per (client, Idempotency-Key) of POST /v1/todos: a retry
	// returns the todo the first request created.
	`CREATE TABLE IF NOT EXISTS todo_idempotency (
	client_id    text NOT NULL,
	key          text NOT NULL,
	request_hash bytea NOT NULL,
	todo_id      bigint NOT NULL,
	created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
	PRIMARY KEY (client_id, key)
)`,
}

// Store errors.
var (
	ErrNotFound       = errors.New("no such todo")
	ErrVersion        = errors.New("the todo changed since that version")
	ErrIdempotencyKey = errors.New("the Idempotency-Key was used before with a different request")
)

// Store reads and writes todos: writes on the writer pool (the proxy's
// writer endpoint), reads on the reader pool (its reader endpoint) unless
// strong consistency is asked for.
type Store struct {
	writer, reader *pgxpool.Pool
}

// NewStore uses the given pools (reader may be the writer).
func NewStore(writer, reader *pgxpool.Pool) *Store {
	if reader == nil {
		reader = writer
	}
	return &Store{writer: writer, reader: reader}
}

// Migrate creates the tables.
func (s *Store) Migrate(ctx context.Context) error {
	if err := buffer.RunDDL(ctx, s.writer, todosDDL); err != nil {
		return fmt.Errorf("todos migration: %w", err)
	}
	return nil
}

const todoColumns = "id, task, status, created_at, updated_at, version"

func scanTodo(row pgx.Row) (Todo, error) {
	var t Todo
	err := row.Scan(&t.ID, &t.Task, &t.Status, &t.CreatedAt, &t.UpdatedAt, &t.Version)
	if errors.Is(err, pgx.ErrNoRows) {
		return t, ErrNotFound
	}
	return t, err
}

func (s *Store) pool(strong bool) *pgxpool.Pool {
	if strong {
		return s.writer
	}
	return s.reader
}

// Get reads one todo.
func (s *Store) Get(ctx context.Context, id int64, strong bool) (Todo, error) {
	return scanTodo(s.pool(strong).QueryRow(ctx, "SELECT "+todoColumns+" FROM todos WHERE id = $1", id))
}

// List returns up to limit todos with id > after, by id (keyset
// pagination), optionally of one status.
func (s *Store) List(ctx context.Context, status string, after int64, limit int, strong bool) ([]Todo, error) {
	q := "SELECT " + todoColumns + " FROM todos WHERE id > $1 AND ($2 = '' OR status = $2) ORDER BY id LIMIT $3"
	rows, err := s.pool(strong).Query(ctx, q, after, status, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Todo{}
	for rows.Next() {
		t, err := scanTodo(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// Create inserts a todo. With an idempotency key, the first request with
// that key (per client) creates it and later ones get the same todo back
// (created false); a later one with a different request hash gets
// ErrIdempotencyKey. Concurrent retries are serialised by the key's
// primary key: the second waits for the first to commit.
func (s *Store) Create(ctx context.Context, clientID, key string, reqHash []byte, task, status string) (Todo, bool, error) {
	if key == "" {
		var t Todo
		err := s.inTx(ctx, func(tx pgx.Tx) error {
			var err error
			t, err = scanTodo(tx.QueryRow(ctx, "INSERT INTO todos (task, status) VALUES ($1, $2) RETURNING "+todoColumns, task, status))
			return err
		})
		return t, err == nil, err
	}
	var (
		t       Todo
		created bool
	)
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		created = false
		var prevHash []byte
		var prevID int64
		err := tx.QueryRow(ctx, "SELECT request_hash, todo_id FROM todo_idempotency WHERE client_id = $1 AND key = $2", clientID, key).Scan(&prevHash, &prevID)
		if err == nil {
			return s.replay(ctx, tx, prevHash, reqHash, prevID, &t)
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		if t, err = scanTodo(tx.QueryRow(ctx, "INSERT INTO todos (task, status) VALUES ($1, $2) RETURNING "+todoColumns, task, status)); err != nil {
			return err
		}
		// A concurrent request with the same key blocks here until this
		// one commits (then it conflicts and replays) or rolls back.
		tag, err := tx.Exec(ctx, "INSERT INTO todo_idempotency (client_id, key, request_hash, todo_id) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
			clientID, key, reqHash, t.ID)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return errReplay
		}
		created = true
		return nil
	})
	if errors.Is(err, errReplay) {
		// Lost the race: the other request's todo is committed now.
		err = s.inTx(ctx, func(tx pgx.Tx) error {
			var prevHash []byte
			var prevID int64
			if err := tx.QueryRow(ctx, "SELECT request_hash, todo_id FROM todo_idempotency WHERE client_id = $1 AND key = $2", clientID, key).Scan(&prevHash, &prevID); err != nil {
				return err
			}
			return s.replay(ctx, tx, prevHash, reqHash, prevID, &t)
		})
	}
	return t, created, err
}

var errReplay = errors.New("idempotency key taken concurrently")

// replay returns the todo a previous request with the same key created.
func (s *Store) replay(ctx context.Context, tx pgx.Tx, prevHash, reqHash []byte, id int64, t *Todo) error {
	if !bytes.Equal(prevHash, reqHash) {
		return ErrIdempotencyKey
	}
	var err error
	*t, err = scanTodo(tx.QueryRow(ctx, "SELECT "+todoColumns+" FROM todos WHERE id = $1", id))
	return err
}

// Update changes a todo's task and status. With ifVersion > 0 it applies
// only to that version (ErrVersion otherwise).
func (s *Store) Update(ctx context.Context, id, ifVersion int64, task, status string) (Todo, error) {
	var t Todo
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		t, err = scanTodo(tx.QueryRow(ctx, `UPDATE todos SET task = $2, status = $3, updated_at = clock_timestamp(), version = version + 1
		WHERE id = $1 AND ($4 = 0 OR version = $4) RETURNING `+todoColumns, id, task, status, ifVersion))
		return err
	})
	if errors.Is(err, ErrNotFound) && ifVersion > 0 {
		return t, s.whyNot(ctx, id)
	}
	return t, err
}

// Delete removes a todo (only at ifVersion when > 0).
func (s *Store) Delete(ctx context.Context, id, ifVersion int64) error {
	var tag pgconn.CommandTag
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		tag, err = tx.Exec(ctx, "DELETE FROM todos WHERE id = $1 AND ($2 = 0 OR version = $2)", id, ifVersion)
		return err
	})
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		if ifVersion > 0 {
			return s.whyNot(ctx, id)
		}
		return ErrNotFound
	}
	return nil
}

// inTx runs fn in a transaction on the writer, again if it was rolled back
// for a reason a retry fixes: a serialization failure or deadlock, the
// 40001 the proxy answers for a transaction that was in flight on a lost
// primary (its COMMIT is resolved on the new primary: 40001 means it did
// not commit), or a connection that failed before anything was sent.
// Explicit transactions are what lets the proxy resolve a COMMIT lost in
// a failover; a lone statement's fate could only be "unknown" (08007).
func (s *Store) inTx(ctx context.Context, fn func(pgx.Tx) error) error {
	for attempt := 1; ; attempt++ {
		err := pgx.BeginFunc(ctx, s.writer, fn)
		if err == nil || attempt == maxTxAttempts || !retryable(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(attempt) * 20 * time.Millisecond):
		}
	}
}

// maxTxAttempts bounds inTx's retries.
const maxTxAttempts = 5

func retryable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "40001" || pe.Code == "40P01"
	}
	return pgconn.SafeToRetry(err)
}

// whyNot tells a missing todo from a version mismatch.
func (s *Store) whyNot(ctx context.Context, id int64) error {
	var n int
	if err := s.writer.QueryRow(ctx, "SELECT count(*) FROM todos WHERE id = $1", id).Scan(&n); err != nil {
		return err
	}
	if n == 0 {
		return ErrNotFound
	}
	return ErrVersion
}

// isCheckViolation reports PostgreSQL's 23514 (a CHECK refused the row).
func isCheckViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23514"
}
