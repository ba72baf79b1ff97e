package postgres

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
)

// A standby that switches to a new timeline streams again from the start of
// the segment where the timeline began, into a file named for the new
// timeline; the part before the switch is a copy of what the older
// timeline's file already holds. If the stream breaks before that copy
// reaches the switch point, the new timeline's file ends early (its
// remaining pages are zeros, or another segment's pages when the file was
// recycled). PostgreSQL reads a segment from the file of the newest
// timeline that began in it, so on its next start it stops at the end of
// that partial copy: WAL it had received, flushed and confirmed as a
// synchronous standby, complete in the older timeline's file, is no longer
// replayed, and a promotion there either panics ("invalid magic number
// 0000", "invalid resource manager ID") or forks a new timeline earlier
// than commits it had confirmed. Both were seen under faults back to back.
//
// SetAsidePartialSegments, run while PostgreSQL is stopped, moves such a
// partial file out of pg_wal when the older timeline's file of the same
// segment holds everything up to the switch point; PostgreSQL then reads
// the older file up to the switch point, as it did before the break.

const (
	walSegmentSize = 16 << 20 // initdb's default, which holdfast keeps
	walPageSize    = 8192
	// walPageMagic is XLOG_PAGE_MAGIC of PostgreSQL 15.
	walPageMagic = 0xD110
)

// walFileName is the name of timeline tli's file of segment segno.
func walFileName(tli int, segno uint64) string {
	perID := uint64(0x100000000 / walSegmentSize)
	return fmt.Sprintf("%08X%08X%08X", tli, segno/perID, segno%perID)
}

// pageWritten reports whether the WAL file at path holds, at the page that
// contains addr, a page written for that address (its header's magic and
// page address), rather than zeros or a recycled segment's page.
func pageWritten(path string, addr LSN) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	page := uint64(addr) &^ (walPageSize - 1)
	var h [16]byte
	if _, err := f.ReadAt(h[:], int64(page%walSegmentSize)); err != nil {
		if errors.Is(err, io.EOF) {
			return false, nil
		}
		return false, err
	}
	return binary.LittleEndian.Uint16(h[0:2]) == walPageMagic && binary.LittleEndian.Uint64(h[8:16]) == page, nil
}

// partialSegment is a file to set aside: timeline TLI's file of the segment
// where it began, which ends before its switch point Begin.
type partialSegment struct {
	Name  string
	TLI   int
	Begin LSN
}

// findPartialSegments looks, in pg_wal directory dir, at the newest
// timeline (newest, whose history is hist) and, as long as one is set
// aside, at its ancestors: a timeline's file of the segment where it began
// is partial when the page before its switch point was never written
// there, and is set aside only when its parent's file of that segment has
// that page (so nothing is lost).
func findPartialSegments(dir string, newest int, hist []HistoryEntry) ([]partialSegment, error) {
	var out []partialSegment
	child := newest
	for k := len(hist) - 1; k >= 0; k-- {
		parent, begin := hist[k].TLI, hist[k].SwitchPoint
		if uint64(begin)%walSegmentSize == 0 {
			return out, nil // the timeline began with a segment of its own
		}
		segno := uint64(begin) / walSegmentSize
		name := walFileName(child, segno)
		path := filepath.Join(dir, name)
		if _, err := os.Stat(path); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return out, nil
			}
			return out, err
		}
		ok, err := pageWritten(path, begin-1)
		if err != nil || ok {
			return out, err
		}
		parentOK, err := pageWritten(filepath.Join(dir, walFileName(parent, segno)), begin-1)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return out, err
		}
		if !parentOK {
			return out, nil // the older file does not have it either: keep what there is
		}
		out = append(out, partialSegment{Name: name, TLI: child, Begin: begin})
		child = parent
	}
	return out, nil
}

// SetAsidePartialSegments moves the partial segment files described above
// from pg_wal into setAside (created if needed), and returns their names.
// PostgreSQL must not be running.
func (i *Instance) SetAsidePartialSegments(setAside string) ([]string, error) {
	dir := filepath.Join(i.cfg.DataDir, "pg_wal")
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("partial segments: %w", err)
	}
	newest := 0
	for _, e := range ents {
		if m := historyFile.FindStringSubmatch(e.Name()); m != nil {
			tli, _ := strconv.ParseUint(m[1], 16, 32)
			newest = max(newest, int(tli))
		}
	}
	if newest < 2 {
		return nil, nil
	}
	b, err := os.ReadFile(filepath.Join(dir, historyName(newest)))
	if err != nil {
		return nil, fmt.Errorf("partial segments: %w", err)
	}
	hist, err := ParseHistory(string(b))
	if err != nil {
		return nil, fmt.Errorf("partial segments: %s: %w", historyName(newest), err)
	}
	found, err := findPartialSegments(dir, newest, hist)
	if err != nil {
		return nil, fmt.Errorf("partial segments: %w", err)
	}
	var moved []string
	for _, p := range found {
		if err := os.MkdirAll(setAside, 0o700); err != nil {
			return moved, fmt.Errorf("partial segments: %w", err)
		}
		if err := os.Rename(filepath.Join(dir, p.Name), filepath.Join(setAside, p.Name)); err != nil {
			return moved, fmt.Errorf("partial segments: %w", err)
		}
		moved = append(moved, fmt.Sprintf("%s (timeline %d, from %s)", p.Name, p.TLI, p.Begin))
	}
	return moved, nil
}
