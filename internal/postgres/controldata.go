package postgres

import (
	"bufio"
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/holdfast/holdfast/internal/lsn"
)

// ControlData is the part of pg_control the agent decides with.
type ControlData struct {
	SystemID string
	// State: "starting up", "shut down", "shut down in recovery",
	// "shutting down", "in crash recovery", "in archive recovery",
	// "in production".
	State             string
	TimeLine          int // latest checkpoint's TimeLineID
	CheckpointLSN     LSN
	REDOLSN           LSN
	MinRecoveryEndLSN LSN
	// MinRecoveryEndTimeLine is the timeline of MinRecoveryEndLSN (0 if none).
	MinRecoveryEndTimeLine int
	WALLogHints            bool
	DataChecksums          bool
	// Raw holds every line of pg_controldata, key to value.
	Raw map[string]string
}

// CleanShutdown reports whether the cluster was shut down cleanly, as a
// primary or as a standby.
func (c ControlData) CleanShutdown() bool {
	return c.State == "shut down" || c.State == "shut down in recovery"
}

// ControlData runs pg_controldata on DataDir. It works whether or not the
// server runs (on a running server the file may lag the server's state).
func (i *Instance) ControlData(ctx context.Context) (ControlData, error) {
	if !i.IsInitialized() {
		return ControlData{}, fmt.Errorf("pg_controldata %s: %w", i.cfg.DataDir, ErrNotInitialized)
	}
	out, err := i.runTool(ctx, "pg_controldata", nil, i.cfg.DataDir)
	if err != nil {
		return ControlData{}, fmt.Errorf("pg_controldata %s: %w", i.cfg.DataDir, err)
	}
	cd, err := parseControlData(string(out))
	if err != nil {
		return ControlData{}, fmt.Errorf("pg_controldata %s: %w", i.cfg.DataDir, err)
	}
	return cd, nil
}

// parseControlData parses pg_controldata's "Key:   value" lines (LC_ALL=C).
func parseControlData(out string) (ControlData, error) {
	cd := ControlData{Raw: map[string]string{}}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		// Keys contain no ':', values may ("pg_control last modified").
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		cd.Raw[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	need := func(k string) (string, error) {
		v, ok := cd.Raw[k]
		if !ok {
			return "", fmt.Errorf("output lacks %q", k)
		}
		return v, nil
	}
	var err error
	lsn := func(k string) LSN {
		if err != nil {
			return 0
		}
		var v string
		if v, err = need(k); err != nil {
			return 0
		}
		var l LSN
		if l, err = lsn.Parse(v); err != nil {
			err = fmt.Errorf("%s: %w", k, err)
		}
		return l
	}
	num := func(k string) int {
		if err != nil {
			return 0
		}
		var v string
		if v, err = need(k); err != nil {
			return 0
		}
		var n int
		if n, err = strconv.Atoi(v); err != nil {
			err = fmt.Errorf("%s: %w", k, err)
		}
		return n
	}
	if cd.SystemID, err = need("Database system identifier"); err != nil {
		return cd, err
	}
	if cd.State, err = need("Database cluster state"); err != nil {
		return cd, err
	}
	cd.TimeLine = num("Latest checkpoint's TimeLineID")
	cd.CheckpointLSN = lsn("Latest checkpoint location")
	cd.REDOLSN = lsn("Latest checkpoint's REDO location")
	cd.MinRecoveryEndLSN = lsn("Minimum recovery ending location")
	cd.MinRecoveryEndTimeLine = num("Min recovery ending loc's timeline")
	if err != nil {
		return cd, err
	}
	cd.WALLogHints = cd.Raw["wal_log_hints setting"] == "on"
	cd.DataChecksums = cd.Raw["Data page checksum version"] != "" && cd.Raw["Data page checksum version"] != "0"
	return cd, nil
}
