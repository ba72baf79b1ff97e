package drill

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/holdfast/holdfast/internal/buffer"
	"github.com/holdfast/holdfast/internal/config"
)

// TableDDL is the drills' table. It has no unique constraint on purpose:
// a write applied twice shows up as two rows, which is what the
// reconciliation looks for.
const TableDDL = `CREATE TABLE IF NOT EXISTS drill_writes (
	drill        text NOT NULL,
	id           uuid NOT NULL,
	requested_at timestamptz NOT NULL,
	written_at   timestamptz NOT NULL DEFAULT clock_timestamp()
)`

// KindDrill is the buffer write kind of the buffer path.
const KindDrill = "drill"

type drillPayload struct {
	Drill       string    `json:"drill"`
	ID          string    `json:"id"`
	RequestedAt time.Time `json:"requested_at"`
}

// BufferHandlers are the handlers of the buffer path's writes (KindDrill).
func BufferHandlers() buffer.Handlers { return buffer.Handlers{KindDrill: drillHandler{}} }

// drillHandler applies drill writes; many at once in one statement, so
// that the committer, not the drill's own table, sets the drain rate.
type drillHandler struct{}

func (drillHandler) DDL() []string {
	return []string{TableDDL, `CREATE INDEX IF NOT EXISTS drill_writes_drill ON drill_writes (drill)`}
}

func (drillHandler) Validate(payload []byte) error {
	var p drillPayload
	if err := json.Unmarshal(payload, &p); err != nil {
		return err
	}
	if _, err := uuid.Parse(p.ID); err != nil || p.Drill == "" {
		return fmt.Errorf("a drill write needs a drill name and a UUID id")
	}
	return nil
}

func decodeDrill(w buffer.Write) (drillPayload, error) {
	var p drillPayload
	if err := json.Unmarshal(w.Payload, &p); err != nil {
		return p, fmt.Errorf("%w: %v", buffer.ErrRejected, err)
	}
	return p, nil
}

func (drillHandler) Apply(ctx context.Context, tx pgx.Tx, w buffer.Write) error {
	p, err := decodeDrill(w)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, "INSERT INTO drill_writes (drill, id, requested_at) VALUES ($1, $2, $3)", p.Drill, p.ID, p.RequestedAt)
	return err
}

func (drillHandler) ApplyBatch(ctx context.Context, tx pgx.Tx, ws []buffer.Write) error {
	drills, ids, ats := make([]string, len(ws)), make([]string, len(ws)), make([]time.Time, len(ws))
	for i, w := range ws {
		p, err := decodeDrill(w)
		if err != nil {
			return err
		}
		drills[i], ids[i], ats[i] = p.Drill, p.ID, p.RequestedAt
	}
	_, err := tx.Exec(ctx, "INSERT INTO drill_writes (drill, id, requested_at) SELECT * FROM unnest($1::text[], $2::uuid[], $3::timestamptz[])", drills, ids, ats)
	return err
}

// Writer performs one drill write along a path.
type Writer interface {
	// Write writes id and says which member answered, if known. The
	// outcome is OK on nil, Error when the write certainly did not happen
	// (ErrRefused), Unknown otherwise.
	Write(ctx context.Context, drill, id string, at time.Time) (member string, err error)
	Close()
}

// ErrRefused wraps errors after which the write is known not to exist.
var ErrRefused = errors.New("refused")

// SQLWriter writes through PostgreSQL connections: to the proxy's writer
// endpoint (path proxy), or to whatever Target returns (path direct: the
// member status calls primary), reconnecting after an error.
type SQLWriter struct {
	// Target returns the DSN to connect to.
	Target func(ctx context.Context) (string, error)
	// Conns bounds the connections (one per concurrent write).
	Conns int

	once sync.Once
	free chan *pgx.Conn
}

func (s *SQLWriter) init() {
	s.once.Do(func() {
		s.free = make(chan *pgx.Conn, max(s.Conns, 1))
		for range max(s.Conns, 1) {
			s.free <- nil
		}
	})
}

// Write implements Writer.
func (s *SQLWriter) Write(ctx context.Context, drill, id string, at time.Time) (string, error) {
	s.init()
	var conn *pgx.Conn
	select {
	case conn = <-s.free:
	case <-ctx.Done():
		return "", fmt.Errorf("%w: %v", ErrRefused, ctx.Err())
	}
	defer func() { s.free <- conn }()
	if conn == nil || conn.IsClosed() {
		dsn, err := s.Target(ctx)
		if err != nil {
			return "", fmt.Errorf("%w: %v", ErrRefused, err)
		}
		if conn, err = pgx.Connect(ctx, dsn); err != nil {
			conn = nil
			return "", fmt.Errorf("%w: connect: %v", ErrRefused, err)
		}
	}
	// The port names the member that wrote, through a proxy too.
	var port int
	err := conn.QueryRow(ctx, "INSERT INTO drill_writes (drill, id, requested_at) VALUES ($1, $2, $3) RETURNING inet_server_port()", drill, id, at).Scan(&port)
	if err == nil {
		return answeredBy(port), nil
	}
	switch {
	case pgconn.SafeToRetry(err): // nothing was sent
		_ = conn.Close(context.Background())
		conn = nil
		return "", fmt.Errorf("%w: %v", ErrRefused, err)
	case isServerError(err) && !isUnknownOutcome(err): // the statement failed: not written
		// The next write connects again, to whoever is primary then: a
		// connection kept to a demoted member would fail every write sent
		// on it ("read-only transaction"), as an application that does
		// not reconnect after an error would.
		_ = conn.Close(context.Background())
		conn = nil
		return "", fmt.Errorf("%w: %v", ErrRefused, err)
	default: // lost mid-flight, or 08007: maybe written
		_ = conn.Close(context.Background())
		conn = nil
		return "", err
	}
}

// answeredBy is what a SQL write's record says of the server that
// answered it: its port (MemberNames maps it to the member).
func answeredBy(port int) string { return fmt.Sprintf("port %d", port) }

// MemberNames maps what a SQL write's record says answered it ("port N",
// the member's own port or the one clients reach it on) to the member's
// name.
func MemberNames(cfg config.Config) map[string]string {
	names := map[string]string{}
	for _, r := range cfg.Regions {
		for _, m := range r.Members {
			names[answeredBy(m.Port)] = m.Name
			names[answeredBy(m.ReachPort())] = m.Name
		}
	}
	return names
}

func isServerError(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe)
}

// isUnknownOutcome: 08007 (transaction resolution unknown) and lost
// connections leave the write's fate open.
func isUnknownOutcome(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "08007"
}

// Close implements Writer.
func (s *SQLWriter) Close() {
	s.init()
	for range max(s.Conns, 1) {
		if c := <-s.free; c != nil {
			_ = c.Close(context.Background())
		}
	}
}

// BufferWriter writes through the durable buffer's HTTP ingest.
type BufferWriter struct {
	// URL is the api server's base URL (http://127.0.0.1:8080).
	URL    string
	Client *http.Client
}

// Write implements Writer: 202 is OK, a 4xx or 503 a refusal, anything
// else (no answer) unknown.
func (b *BufferWriter) Write(ctx context.Context, drill, id string, at time.Time) (string, error) {
	payload, _ := json.Marshal(drillPayload{Drill: drill, ID: id, RequestedAt: at})
	body, _ := json.Marshal(map[string]any{"kind": KindDrill, "key": drill + ":" + id, "payload": json.RawMessage(payload)})
	req, err := http.NewRequestWithContext(ctx, "POST", b.URL+"/v1/writes", strings.NewReader(string(body)))
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrRefused, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := b.Client.Do(req)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && !ne.Timeout() {
			return "", fmt.Errorf("%w: %v", ErrRefused, err) // not connected: nothing sent
		}
		return "", err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode == http.StatusAccepted {
		return "buffer", nil
	}
	if resp.StatusCode/100 == 4 {
		return "", fmt.Errorf("%w: HTTP %d: %s", ErrRefused, resp.StatusCode, msg)
	}
	// 503: the write may or may not have been stored.
	return "", fmt.Errorf("HTTP %d: %s", resp.StatusCode, msg)
}

// Close implements Writer.
func (b *BufferWriter) Close() { b.Client.CloseIdleConnections() }

// Load sends writes at Rate per second for the duration of ctx, with at
// most Concurrency in flight, and records each.
type Load struct {
	Drill       string
	Writer      Writer
	Rate        float64
	Concurrency int
	// Timeout bounds one write (its outcome is unknown beyond).
	Timeout time.Duration
	// Observe, if set, hears each record as its write completes.
	Observe func(Record)
	// Discard keeps no records (a load that runs for hours: Observe sees
	// them all the same).
	Discard bool

	mu      sync.Mutex
	records []Record // guarded by mu
}

// Run sends until ctx ends, then waits for the writes in flight.
func (l *Load) Run(ctx context.Context) {
	interval := time.Duration(float64(time.Second) / l.Rate)
	sem := make(chan struct{}, max(l.Concurrency, 1))
	var wg sync.WaitGroup
	next := time.Now()
	for ctx.Err() == nil {
		if d := time.Until(next); d > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(d):
			}
			if ctx.Err() != nil {
				break
			}
		}
		next = next.Add(interval)
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			l.one()
		}()
	}
	wg.Wait()
}

func (l *Load) one() {
	id := uuid.NewString()
	sent := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), l.Timeout)
	defer cancel()
	member, err := l.Writer.Write(ctx, l.Drill, id, sent)
	r := Record{ID: id, Sent: sent, Done: time.Now(), Member: member, Outcome: OK}
	switch {
	case err == nil:
	case errors.Is(err, ErrRefused):
		r.Outcome = Error
	default:
		r.Outcome = Unknown
	}
	if l.Observe != nil {
		l.Observe(r)
	}
	if l.Discard {
		return
	}
	l.mu.Lock()
	l.records = append(l.records, r)
	l.mu.Unlock()
}

// Records returns what was recorded so far.
func (l *Load) Records() []Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Record(nil), l.records...)
}

// FirstWrittenAfter is when the first row of drill was written after t, as
// the database's clock says (zero if none was).
func FirstWrittenAfter(ctx context.Context, conn *pgx.Conn, drill string, t time.Time) (time.Time, error) {
	var first *time.Time
	if err := conn.QueryRow(ctx, "SELECT min(written_at) FROM drill_writes WHERE drill = $1 AND written_at > $2", drill, t).Scan(&first); err != nil || first == nil {
		return time.Time{}, err
	}
	return *first, nil
}

// Stored counts the rows of each id of drill in the database.
func Stored(ctx context.Context, conn *pgx.Conn, drill string) (map[string]int, error) {
	rows, err := conn.Query(ctx, "SELECT id::text, count(*) FROM drill_writes WHERE drill = $1 GROUP BY id", drill)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var id string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			return nil, err
		}
		out[id] = n
	}
	return out, rows.Err()
}
