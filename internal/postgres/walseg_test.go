package postgres

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeSegment writes timeline tli's file of segment segno with every page
// up to (not including) the page holding upTo written, the rest zeros
// (recycled: written for another segment when recycled is set).
func writeSegment(t *testing.T, dir string, tli int, segno uint64, upTo LSN, recycled bool) {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, walFileName(tli, segno)))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(walSegmentSize); err != nil {
		t.Fatal(err)
	}
	start := segno * walSegmentSize
	for page := start; page < start+walSegmentSize; page += walPageSize {
		var h [16]byte
		switch {
		case page < uint64(upTo)&^(walPageSize-1):
			binary.LittleEndian.PutUint16(h[0:2], walPageMagic)
			binary.LittleEndian.PutUint32(h[4:8], uint32(tli))
			binary.LittleEndian.PutUint64(h[8:16], page)
		case recycled:
			binary.LittleEndian.PutUint16(h[0:2], walPageMagic)
			binary.LittleEndian.PutUint64(h[8:16], page-7*walSegmentSize)
		default:
			continue
		}
		if _, err := f.WriteAt(h[:], int64(page-start)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestWALFileName(t *testing.T) {
	if got := walFileName(42, 0x53); got != "0000002A0000000000000053" {
		t.Errorf("walFileName = %s", got)
	}
	if got := walFileName(1, 0x1FF); got != "0000000100000001000000FF" {
		t.Errorf("walFileName = %s", got)
	}
}

func TestFindPartialSegments(t *testing.T) {
	const seg = 0x53
	// Timeline 41 began at 0/53C0C378 and ended at 0/53C18770, where 42
	// began: the case seen, a stream on timeline 42 broken at 0/53BDE000.
	hist := []HistoryEntry{{TLI: 40, SwitchPoint: 0x53C0C378}, {TLI: 41, SwitchPoint: 0x53C18770}}
	end := LSN(0x53C18770)
	for _, tt := range []struct {
		name  string
		files func(dir string)
		want  []string
	}{
		{"newest timeline's copy broke before the switch point: set aside", func(dir string) {
			writeSegment(t, dir, 41, seg, end+walPageSize, false)
			writeSegment(t, dir, 42, seg, 0x53BDE000, false)
		}, []string{walFileName(42, seg)}},
		{"the same, the file recycled from another segment", func(dir string) {
			writeSegment(t, dir, 41, seg, end+walPageSize, false)
			writeSegment(t, dir, 42, seg, 0x53BDE000, true)
		}, []string{walFileName(42, seg)}},
		{"newest timeline's file reaches past the switch point: kept", func(dir string) {
			writeSegment(t, dir, 41, seg, end+walPageSize, false)
			writeSegment(t, dir, 42, seg, end+3*walPageSize, false)
		}, nil},
		{"the older file lacks it too: nothing to gain, kept", func(dir string) {
			writeSegment(t, dir, 41, seg, 0x53B00000, false)
			writeSegment(t, dir, 42, seg, 0x53BDE000, false)
		}, nil},
		{"no older file: kept", func(dir string) {
			writeSegment(t, dir, 42, seg, 0x53BDE000, false)
		}, nil},
		{"no file of the newest timeline: nothing", func(dir string) {
			writeSegment(t, dir, 41, seg, end+walPageSize, false)
		}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			tt.files(dir)
			got, err := findPartialSegments(dir, 42, hist)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, p := range got {
				names = append(names, p.Name)
			}
			if strings.Join(names, ",") != strings.Join(tt.want, ",") {
				t.Errorf("set aside %v, want %v", names, tt.want)
			}
		})
	}
	t.Run("a timeline that began at a segment boundary has no copy to break", func(t *testing.T) {
		dir := t.TempDir()
		writeSegment(t, dir, 2, 0x54, 0x54000000, false)
		got, err := findPartialSegments(dir, 2, []HistoryEntry{{TLI: 1, SwitchPoint: 0x54000000}})
		if err != nil || len(got) != 0 {
			t.Errorf("set aside %v, %v", got, err)
		}
	})
}

func TestSetAsidePartialSegments(t *testing.T) {
	data := t.TempDir()
	wal := filepath.Join(data, "pg_wal")
	if err := os.MkdirAll(wal, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(wal, historyName(42)), []byte("40\t0/53C0C378\tno recovery target specified\n41\t0/53C18770\tno recovery target specified\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	writeSegment(t, wal, 41, 0x53, 0x53C1A000, false)
	writeSegment(t, wal, 42, 0x53, 0x53BDE000, false)
	i := &Instance{cfg: Config{DataDir: data}}
	aside := filepath.Join(t.TempDir(), "set-aside")
	moved, err := i.SetAsidePartialSegments(aside)
	if err != nil || len(moved) != 1 || !strings.HasPrefix(moved[0], walFileName(42, 0x53)) {
		t.Fatalf("moved %v, %v", moved, err)
	}
	if _, err := os.Stat(filepath.Join(aside, walFileName(42, 0x53))); err != nil {
		t.Errorf("the partial file is not in the set-aside directory: %v", err)
	}
	if _, err := os.Stat(filepath.Join(wal, walFileName(41, 0x53))); err != nil {
		t.Errorf("the complete older file was touched: %v", err)
	}
	// Run again: nothing more to do.
	if moved, err := i.SetAsidePartialSegments(aside); err != nil || len(moved) != 0 {
		t.Errorf("second run moved %v, %v", moved, err)
	}
}
