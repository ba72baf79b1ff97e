package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The heartbeat row lives in the postgres database, out of applications'
// way. The primary's agent rewrites it several times a second; a replica
// reading it knows how old the newest write it has replayed is.
const heartbeatDDL = `CREATE TABLE IF NOT EXISTS holdfast_heartbeat (
	id int PRIMARY KEY CHECK (id = 1),
	beat_at timestamptz NOT NULL,
	member text NOT NULL,
	timeline int NOT NULL
)`

// Heartbeat is the row as last written.
type Heartbeat struct {
	At       time.Time // the primary's clock_timestamp() when it wrote the row
	Member   string
	Timeline int
}

// HeartbeatConn opens the connection heartbeats are written and read on:
// superuser over the unix socket, with synchronous_commit = local, so that a
// heartbeat never waits for a synchronous standby. The heartbeat measures
// replication, and must not stall, or pile up, while the quorum is
// incomplete. The caller closes it.
func (i *Instance) HeartbeatConn(ctx context.Context) (*pgx.Conn, error) {
	cfg, err := i.connConfig()
	if err != nil {
		return nil, err
	}
	cfg.RuntimeParams["application_name"] = "holdfast-heartbeat"
	cfg.RuntimeParams["synchronous_commit"] = "local"
	return pgx.ConnectConfig(ctx, cfg)
}

// Beat writes the heartbeat row on a primary, creating its table the first
// time. conn comes from HeartbeatConn.
func Beat(ctx context.Context, conn *pgx.Conn, member string) error {
	const upsert = `INSERT INTO holdfast_heartbeat (id, beat_at, member, timeline)
		VALUES (1, clock_timestamp(), $1, (SELECT timeline_id FROM pg_control_checkpoint()))
		ON CONFLICT (id) DO UPDATE SET beat_at = excluded.beat_at, member = excluded.member, timeline = excluded.timeline`
	_, err := conn.Exec(ctx, upsert, member)
	if undefinedTable(err) {
		if _, err := conn.Exec(ctx, heartbeatDDL); err != nil {
			return err
		}
		_, err = conn.Exec(ctx, upsert, member)
	}
	return err
}

// ReadHeartbeat reads the heartbeat row and whether the server is in
// recovery. ok is false while no heartbeat has reached this server.
func ReadHeartbeat(ctx context.Context, conn *pgx.Conn) (hb Heartbeat, inRecovery, ok bool, err error) {
	var at *time.Time
	var member *string
	var tli *int32
	err = conn.QueryRow(ctx, `SELECT pg_is_in_recovery(), h.beat_at, h.member, h.timeline
		FROM (SELECT 1) AS one LEFT JOIN holdfast_heartbeat AS h ON h.id = 1`).Scan(&inRecovery, &at, &member, &tli)
	if undefinedTable(err) {
		err = conn.QueryRow(ctx, `SELECT pg_is_in_recovery()`).Scan(&inRecovery)
		return hb, inRecovery, false, err
	}
	if err != nil || at == nil {
		return hb, inRecovery, false, err
	}
	hb.At, hb.Member, hb.Timeline = *at, *member, int(*tli)
	return hb, inRecovery, true, nil
}

func undefinedTable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "42P01"
}
