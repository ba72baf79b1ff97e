package postgres

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Rewind makes DataDir (a former primary or standby that diverged) a copy of
// the running member src up to their common history with pg_rewind, so it
// can follow src as a standby without a full base backup. The instance must
// be stopped; it need not have been stopped cleanly (pg_rewind first runs
// single-user crash recovery on it). src gives host and port; empty User,
// Password and DBName default to the superuser and "postgres". "No rewind
// required" is success.
//
// Every failure of pg_rewind itself wraps ErrRewindFailed: the data
// directory may then be unusable and the caller should replace it with a
// fresh copy (Recopy). Failing to reach the source beforehand (Rewind first
// connects to it, see checkpointIfPromoted), or pg_rewind losing it before
// it changed anything (sourceLost), does not wrap it: the data directory is
// untouched and a retry may succeed.
//
// After success DataDir/standby.signal exists whatever Settings were last
// written: a rewound instance must not start as a primary. Write
// Settings{Standby: true, PrimaryConnInfo: src, ...} and Start.
func (i *Instance) Rewind(ctx context.Context, src ConnInfo) error {
	i.opMu.Lock()
	defer i.opMu.Unlock()
	if !i.IsInitialized() {
		return fmt.Errorf("rewind %s: %w", i.cfg.DataDir, ErrNotInitialized)
	}
	if i.Running() {
		return fmt.Errorf("rewind %s: %w", i.cfg.DataDir, ErrRunning)
	}
	if src.User == "" {
		src.User = i.cfg.SuperUser
	}
	if src.Password == "" && src.User == i.cfg.SuperUser {
		src.Password = i.cfg.SuperPassword
	}
	if src.DBName == "" {
		src.DBName = "postgres"
	}
	if src.ConnectTimeout == 0 {
		src.ConnectTimeout = 10 * time.Second
	}
	if src.AppName == "" {
		src.AppName = "holdfast-rewind-" + i.cfg.Name
	}
	password := src.Password
	src.Password = ""

	// Not ErrRewindFailed: nothing has been touched yet, and a caller that
	// fell back to RemoveData+BaseBackup because the source was briefly
	// unreachable would throw away a rewindable data directory.
	if err := i.checkpointIfPromoted(ctx, src, password); err != nil {
		return fmt.Errorf("rewind %s from %s:%d: %w", i.cfg.DataDir, src.Host, src.Port, err)
	}

	// The single-user crash recovery pg_rewind may run refuses standby mode
	// ("standby mode is not supported by single-user servers"), so the
	// signal files go for the duration, and come back if pg_rewind fails.
	var removed []string
	for _, f := range []string{"standby.signal", "recovery.signal"} {
		p := filepath.Join(i.cfg.DataDir, f)
		err := os.Remove(p)
		if err == nil {
			removed = append(removed, p)
		} else if !os.IsNotExist(err) {
			return fmt.Errorf("rewind %s: %w", i.cfg.DataDir, err)
		}
	}
	// That recovery reads DataDir/postgresql.conf: see writeDataDirStub.
	err := i.writeDataDirStub()
	var out []byte
	start := time.Now()
	if err == nil {
		i.log.Info("pg_rewind", "source", fmt.Sprintf("%s:%d", src.Host, src.Port), "data_dir", i.cfg.DataDir)
		out, err = i.runTool(ctx, "pg_rewind", []string{"PGPASSWORD=" + password},
			"--target-pgdata="+i.cfg.DataDir,
			"--source-server="+src.String(),
		)
	}
	if err != nil {
		for _, p := range removed {
			if werr := i.writeFileAtomic(p, nil, 0o600); werr != nil {
				i.log.Error("could not restore signal file after failed rewind", "file", p, "err", werr)
			}
		}
		if sourceLost(out) {
			// Not ErrRewindFailed: pg_rewind lost its source before it
			// changed anything; a retry may succeed.
			return fmt.Errorf("rewind %s from %s:%d: the source was lost before anything was rewound: %w", i.cfg.DataDir, src.Host, src.Port, err)
		}
		return fmt.Errorf("rewind %s from %s:%d: %w: %w", i.cfg.DataDir, src.Host, src.Port, ErrRewindFailed, err)
	}
	if strings.Contains(string(out), "no rewind required") {
		i.log.Info("pg_rewind: no rewind required", "took", time.Since(start))
	} else {
		i.log.Info("pg_rewind done", "took", time.Since(start), "output", tail(out, 3))
	}

	// A rewound data directory must never start as a primary: it would
	// fork its own timeline from src's history. Settings written before the
	// rewind (when this member may have been the primary) are stale, so the
	// instance becomes a standby until the caller writes Standby: false.
	if err := i.applyStandbySignal(true); err != nil {
		return fmt.Errorf("rewind %s: %w", i.cfg.DataDir, err)
	}
	i.mu.Lock()
	if i.settings != nil {
		s := *i.settings
		s.Standby = true
		i.settings = &s
	}
	i.mu.Unlock()
	return nil
}

// sourceLost says, from pg_rewind's output, that it failed for want of its
// source (it could not connect, or the connection broke) before it began to
// change the target: it changes nothing before it prints "rewinding from
// last common checkpoint" (the crash recovery it may run first leaves a
// consistent data directory).
func sourceLost(out []byte) bool {
	s := string(out)
	if strings.Contains(s, "rewinding from last common checkpoint") {
		return false
	}
	for _, m := range []string{"connection to server", "could not connect", "server closed the connection", "timeout expired", "terminating connection", "Connection refused", "no connection to the server"} {
		if strings.Contains(s, m) {
			return true
		}
	}
	return false
}

// checkpointIfPromoted runs CHECKPOINT on a source primary whose pg_control
// still shows its pre-promotion timeline. Promotion does not wait for a
// checkpoint, and pg_rewind takes the source's timeline from pg_control: on
// a just-promoted source it concludes "source and target cluster are on the
// same timeline, no rewind required" and leaves the target diverged (seen in
// TestCluster/promote_crash_rewind before this check existed).
func (i *Instance) checkpointIfPromoted(ctx context.Context, src ConnInfo, password string) error {
	src.Password = password
	cfg, err := pgx.ParseConfig(src.String())
	if err != nil {
		return fmt.Errorf("source connection config: %w", err)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("connect to source: %w", err)
	}
	defer conn.Close(context.Background())
	var inRecovery bool
	if err := conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery); err != nil {
		return fmt.Errorf("query source: %w", err)
	}
	if inRecovery {
		return nil // a standby source: its control file follows replay
	}
	var walfile string
	var ckptTLI int32
	if err := conn.QueryRow(ctx, "SELECT pg_walfile_name(pg_current_wal_lsn()), (SELECT timeline_id FROM pg_control_checkpoint())").
		Scan(&walfile, &ckptTLI); err != nil {
		return fmt.Errorf("query source: %w", err)
	}
	tli, err := timelineOfWALFile(walfile)
	if err != nil {
		return err
	}
	if int(ckptTLI) >= tli {
		return nil
	}
	i.log.Info("source promoted recently, checkpointing it so pg_rewind sees its timeline", "control_timeline", ckptTLI, "timeline", tli)
	if _, err := conn.Exec(ctx, "CHECKPOINT"); err != nil {
		return fmt.Errorf("checkpoint source: %w", err)
	}
	return nil
}
