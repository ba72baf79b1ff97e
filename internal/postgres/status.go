package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast/internal/lsn"
)

// Replica is one row of the primary's pg_stat_replication. pg_basebackup
// streams appear here too (AppName "pg_basebackup").
type Replica struct {
	AppName    string
	State      string // startup, catchup, streaming, backup, stopping
	SyncState  string // async, potential, sync, quorum
	ClientAddr string
	SentLSN    LSN
	WriteLSN   LSN
	FlushLSN   LSN
	ReplayLSN  LSN
	ReplayLag  time.Duration
}

// Status is what the running server says about itself.
type Status struct {
	InRecovery bool
	// TimeLine: on a primary, from the current WAL file name, which is
	// right immediately after promotion (the checkpoint timeline is not
	// until the end-of-recovery checkpoint finishes). On a standby, the
	// timeline the WAL receiver last received, else that of the latest
	// restartpoint.
	TimeLine int
	// CurrentLSN: primary, pg_current_wal_lsn(); standby, the larger of the
	// received and replayed positions (what it would have if promoted).
	CurrentLSN        LSN
	ReceiveLSN        LSN // standby only
	ReplayLSN         LSN // standby only
	ReplayTimestamp   time.Time
	WalReceiverStatus string // standby: pg_stat_wal_receiver.status, "" if no WAL receiver
	SenderHost        string
	SenderPort        int
	Replicas          []Replica // primary only
	SyncStandbyNames  string
	// ReplayLag (standby only) is how far replay is behind in time: 0 when
	// everything received has been replayed (pg_last_wal_receive_lsn() <=
	// pg_last_wal_replay_lsn()), else now() - pg_last_xact_replay_timestamp(),
	// never negative. ReplayLagKnown is false on a primary, and on a standby
	// that has not replayed a transaction since it started while it has WAL
	// left to replay or has never streamed.
	//
	// A replica that receives nothing (WAL receiver starved or cut off)
	// replays all it has and reports 0: this measures replay, not how far
	// the received WAL is behind the primary.
	ReplayLag      time.Duration
	ReplayLagKnown bool
}

// Status queries the server over the unix socket, reusing a cached
// connection (reconnecting once if it broke, e.g. after a restart). The
// query is bounded by 5s unless ctx is shorter.
func (i *Instance) Status(ctx context.Context) (Status, error) {
	ctx, cancel := withTimeout(ctx, 5*time.Second)
	defer cancel()
	i.statusMu.Lock()
	defer i.statusMu.Unlock()

	for attempt := 0; ; attempt++ {
		cached := i.statusConn != nil
		if !cached {
			conn, err := i.Conn(ctx)
			if err != nil {
				return Status{}, fmt.Errorf("status: %w", err)
			}
			i.statusConn = conn
		}
		st, err := queryStatus(ctx, i.statusConn)
		if err == nil {
			return st, nil
		}
		// Any error may have left the connection unusable (a cancelled
		// query, a restarted server): drop it.
		i.statusConn.Close(context.Background())
		i.statusConn = nil
		if !cached || attempt > 0 || ctx.Err() != nil {
			return Status{}, fmt.Errorf("status: %w", err)
		}
	}
}

func (i *Instance) closeStatusConn() {
	i.statusMu.Lock()
	defer i.statusMu.Unlock()
	if i.statusConn != nil {
		i.statusConn.Close(context.Background())
		i.statusConn = nil
	}
}

func queryStatus(ctx context.Context, conn *pgx.Conn) (Status, error) {
	var st Status
	var replayTS *time.Time
	if err := conn.QueryRow(ctx, `SELECT pg_is_in_recovery(), current_setting('synchronous_standby_names'), pg_last_xact_replay_timestamp()`).
		Scan(&st.InRecovery, &st.SyncStandbyNames, &replayTS); err != nil {
		return st, err
	}
	if replayTS != nil {
		st.ReplayTimestamp = *replayTS
	}
	if st.InRecovery {
		return st, queryStandby(ctx, conn, &st)
	}
	return st, queryPrimary(ctx, conn, &st)
}

func queryPrimary(ctx context.Context, conn *pgx.Conn, st *Status) error {
	var cur, walfile string
	// Recovery may end between the two queries (promotion); then these
	// functions fail and the caller retries on its next poll.
	if err := conn.QueryRow(ctx, `SELECT l::text, pg_walfile_name(l) FROM pg_current_wal_lsn() AS l`).Scan(&cur, &walfile); err != nil {
		return err
	}
	var err error
	if st.CurrentLSN, err = lsn.Parse(cur); err != nil {
		return err
	}
	if st.TimeLine, err = timelineOfWALFile(walfile); err != nil {
		return err
	}
	rows, err := conn.Query(ctx, `
		SELECT coalesce(application_name, ''), coalesce(state, ''), coalesce(sync_state, ''),
		       coalesce(host(client_addr), ''),
		       coalesce(sent_lsn::text, ''), coalesce(write_lsn::text, ''),
		       coalesce(flush_lsn::text, ''), coalesce(replay_lsn::text, ''),
		       coalesce(extract(epoch FROM replay_lag), 0)::float8
		FROM pg_stat_replication
		ORDER BY application_name, pid`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var r Replica
		var sent, write, flush, replay string
		var lag float64
		if err := rows.Scan(&r.AppName, &r.State, &r.SyncState, &r.ClientAddr, &sent, &write, &flush, &replay, &lag); err != nil {
			return err
		}
		for _, p := range []struct {
			s   string
			dst *LSN
		}{{sent, &r.SentLSN}, {write, &r.WriteLSN}, {flush, &r.FlushLSN}, {replay, &r.ReplayLSN}} {
			if *p.dst, err = parseLSNOrZero(p.s); err != nil {
				return err
			}
		}
		r.ReplayLag = time.Duration(lag * float64(time.Second))
		st.Replicas = append(st.Replicas, r)
	}
	return rows.Err()
}

func queryStandby(ctx context.Context, conn *pgx.Conn, st *Status) error {
	var recv, replay string
	var ckptTLI int32
	var lag *float64
	// The lag is computed in the same statement as the positions, from one
	// reading of each. <= rather than =: after a restart the receiver
	// starts streaming at a segment boundary, behind what was replayed.
	if err := conn.QueryRow(ctx, `
		SELECT coalesce(r::text, ''), coalesce(p::text, ''),
		       (SELECT timeline_id FROM pg_control_checkpoint()),
		       CASE WHEN r <= p THEN 0
		            ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 END
		FROM pg_last_wal_receive_lsn() AS r, pg_last_wal_replay_lsn() AS p`).Scan(&recv, &replay, &ckptTLI, &lag); err != nil {
		return err
	}
	if lag != nil {
		// Negative when our clock is behind the primary's.
		st.ReplayLag, st.ReplayLagKnown = time.Duration(max(*lag, 0)*float64(time.Second)), true
	}
	var err error
	if st.ReceiveLSN, err = parseLSNOrZero(recv); err != nil {
		return err
	}
	if st.ReplayLSN, err = parseLSNOrZero(replay); err != nil {
		return err
	}
	st.CurrentLSN = max(st.ReceiveLSN, st.ReplayLSN)
	st.TimeLine = int(ckptTLI)

	var status, host string
	var tli, port int32
	err = conn.QueryRow(ctx, `
		SELECT coalesce(status, ''), coalesce(received_tli, 0), coalesce(sender_host, ''), coalesce(sender_port, 0)
		FROM pg_stat_wal_receiver`).Scan(&status, &tli, &host, &port)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil
	case err != nil:
		return err
	}
	st.WalReceiverStatus, st.SenderHost, st.SenderPort = status, host, int(port)
	if tli > 0 {
		st.TimeLine = int(tli)
	}
	return nil
}

// timelineOfWALFile reads the timeline from the first 8 hex digits of a WAL
// file name.
func timelineOfWALFile(name string) (int, error) {
	if len(name) < 24 {
		return 0, fmt.Errorf("unexpected WAL file name %q", name)
	}
	tli, err := strconv.ParseUint(name[:8], 16, 32)
	if err != nil {
		return 0, fmt.Errorf("unexpected WAL file name %q: %w", name, err)
	}
	return int(tli), nil
}
