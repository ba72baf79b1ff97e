package postgres

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast/internal/lsn"
)

// A timeline history file (pg_wal/0000000N.history) lists, for each
// ancestor of timeline N, where it ended: "parentTLI<TAB>switchpoint<TAB>
// reason". Timeline N's file holds the whole ancestry, so the file of any
// ancestor K is its first K-1 lines.

// HistoryEntry is one line: timeline TLI ended at SwitchPoint.
type HistoryEntry struct {
	TLI         int
	SwitchPoint LSN
	Reason      string
}

// ParseHistory reads a timeline history file. Comment and blank lines are
// skipped, as PostgreSQL does; timelines must increase.
func ParseHistory(content string) ([]HistoryEntry, error) {
	var out []HistoryEntry
	for n, line := range strings.Split(content, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			return nil, fmt.Errorf("timeline history line %d: %q: want a timeline and a switch point", n+1, line)
		}
		tli, err := strconv.ParseUint(f[0], 10, 32)
		if err != nil || tli == 0 {
			return nil, fmt.Errorf("timeline history line %d: timeline %q", n+1, f[0])
		}
		at, err := lsn.Parse(f[1])
		if err != nil {
			return nil, fmt.Errorf("timeline history line %d: switch point: %w", n+1, err)
		}
		if len(out) > 0 && int(tli) <= out[len(out)-1].TLI {
			return nil, fmt.Errorf("timeline history line %d: timeline %d after %d", n+1, tli, out[len(out)-1].TLI)
		}
		out = append(out, HistoryEntry{TLI: int(tli), SwitchPoint: at, Reason: strings.Join(f[2:], " ")})
	}
	return out, nil
}

// SwitchPoint is where timeline tli ended in history, false when history
// does not leave it (tli is the history's own timeline, or not an ancestor).
func SwitchPoint(history []HistoryEntry, tli int) (LSN, bool) {
	for _, e := range history {
		if e.TLI == tli {
			return e.SwitchPoint, true
		}
	}
	return 0, false
}

// Diverged says whether a member whose WAL goes up to at on timeline tli
// has left the history of a later timeline: tli forked off at a switch
// point before at. Such a member cannot follow that timeline by streaming;
// it needs pg_rewind (or a fresh copy).
func Diverged(history []HistoryEntry, tli int, at LSN) bool {
	sp, ok := SwitchPoint(history, tli)
	return ok && at > sp
}

var historyFile = regexp.MustCompile(`^([0-9A-F]{8})\.history$`)

func historyName(tli int) string { return fmt.Sprintf("%08X.history", tli) }

// CompleteTimelineHistory writes, into pg_wal, the history files of the
// ancestors of the newest timeline that are missing, derived from the
// newest one. pg_basebackup copies only the current timeline's history
// file, and a standby that cascades from such a copy asks its upstream for
// each timeline's file in turn: without them it stalls for good ("could
// not receive timeline history file from the primary server"). It returns
// the timelines written.
func (i *Instance) CompleteTimelineHistory() ([]int, error) {
	dir := filepath.Join(i.cfg.DataDir, "pg_wal")
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("timeline history: %w", err)
	}
	have := map[int]bool{}
	newest := 0
	for _, e := range ents {
		m := historyFile.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		tli, _ := strconv.ParseUint(m[1], 16, 32)
		have[int(tli)] = true
		newest = max(newest, int(tli))
	}
	if newest < 3 {
		return nil, nil // timeline 1 has no file; 2's file has no ancestor with one
	}
	b, err := os.ReadFile(filepath.Join(dir, historyName(newest)))
	if err != nil {
		return nil, fmt.Errorf("timeline history: %w", err)
	}
	lines := historyLines(string(b))
	hist, err := ParseHistory(string(b))
	if err != nil {
		return nil, fmt.Errorf("timeline history %s: %w", historyName(newest), err)
	}
	var written []int
	for k := range hist {
		// Entry k's timeline was followed by hist[k+1].TLI (or by the
		// newest): that child's file is the lines up to and including k.
		child := newest
		if k+1 < len(hist) {
			child = hist[k+1].TLI
		}
		if child == newest || have[child] {
			continue
		}
		content := strings.Join(lines[:k+1], "\n") + "\n"
		if err := i.writeFileAtomic(filepath.Join(dir, historyName(child)), []byte(content), 0o600); err != nil {
			return written, fmt.Errorf("timeline history: %w", err)
		}
		written = append(written, child)
	}
	sort.Ints(written)
	return written, nil
}

// historyLines are the file's entry lines, as written.
func historyLines(content string) []string {
	var out []string
	for _, line := range strings.Split(content, "\n") {
		t := strings.TrimSpace(line)
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		out = append(out, strings.TrimRight(line, "\r"))
	}
	return out
}

// ReadTimelineHistory reads timeline tli's history file on a running
// server (superuser: pg_read_file), nil for timeline 1.
func ReadTimelineHistory(ctx context.Context, src ConnInfo, tli int) ([]HistoryEntry, error) {
	if tli <= 1 {
		return nil, nil
	}
	cfg, err := pgx.ParseConfig(src.String())
	if err != nil {
		return nil, fmt.Errorf("timeline history: %w", err)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("timeline history from %s:%d: %w", src.Host, src.Port, err)
	}
	defer conn.Close(context.Background())
	var content string
	if err := conn.QueryRow(ctx, "SELECT pg_read_file($1)", "pg_wal/"+historyName(tli)).Scan(&content); err != nil {
		return nil, fmt.Errorf("timeline %d history from %s:%d: %w", tli, src.Host, src.Port, err)
	}
	return ParseHistory(content)
}
