package postgres

import (
	"os"
	"path/filepath"
	"testing"
)

const history5 = "1\t0/3000158\tno recovery target specified\n\n2\t0/5000000\tno recovery target specified\n4\t0/9A0B1C8\tno recovery target specified\n"

func TestParseHistory(t *testing.T) {
	h, err := ParseHistory(history5)
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 3 || h[0].TLI != 1 || h[1].TLI != 2 || h[2].TLI != 4 || h[2].SwitchPoint != LSN(0x9A0B1C8) {
		t.Fatalf("parsed %+v", h)
	}
	for _, tt := range []struct {
		tli  int
		at   LSN
		want bool
	}{
		{2, 0x4FFFFFF, false}, // timeline 2 ended at 0/5000000: not past it
		{2, 0x5000000, false},
		{2, 0x5000001, true}, // WAL on timeline 2 past the fork: diverged
		{4, 0x9A0B1C8, false},
		{4, 0x9A0B1D0, true},
		{3, 0x9000000, false}, // not an ancestor: not this check's to say
		{5, 0xFFFFFFFF, false},
	} {
		if got := Diverged(h, tt.tli, tt.at); got != tt.want {
			t.Errorf("Diverged(tli %d, %s) = %v, want %v", tt.tli, tt.at, got, tt.want)
		}
	}
	for _, bad := range []string{"x\t0/1\n", "2\tnot-an-lsn\n", "2\n", "3\t0/1\n2\t0/2\n", "0\t0/1\n"} {
		if _, err := ParseHistory(bad); err == nil {
			t.Errorf("ParseHistory(%q) accepted", bad)
		}
	}
}

func FuzzParseHistory(f *testing.F) {
	f.Add(history5)
	f.Add("# comment\n1\t0/1\treason with spaces\n")
	f.Fuzz(func(t *testing.T, s string) {
		h, err := ParseHistory(s)
		if err != nil {
			return
		}
		for k := 1; k < len(h); k++ {
			if h[k].TLI <= h[k-1].TLI {
				t.Fatalf("timelines not increasing: %+v", h)
			}
		}
	})
}

// TestCompleteTimelineHistory: a data directory holding only the newest
// history file (as pg_basebackup leaves it) gets its ancestors' files,
// each the prefix of the newest, and keeps what it had.
func TestCompleteTimelineHistory(t *testing.T) {
	dir := t.TempDir()
	wal := filepath.Join(dir, "pg_wal")
	if err := os.MkdirAll(wal, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(wal, "00000005.history"), []byte(history5), 0o600); err != nil {
		t.Fatal(err)
	}
	kept := "1\t0/3000158\tkept as it was\n"
	if err := os.WriteFile(filepath.Join(wal, "00000002.history"), []byte(kept), 0o600); err != nil {
		t.Fatal(err)
	}
	i := &Instance{cfg: Config{DataDir: dir}}
	written, err := i.CompleteTimelineHistory()
	if err != nil {
		t.Fatal(err)
	}
	if len(written) != 1 || written[0] != 4 {
		t.Fatalf("wrote %v, want [4] (3 is not an ancestor of 5, 2 exists)", written)
	}
	b, err := os.ReadFile(filepath.Join(wal, "00000004.history"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), "1\t0/3000158\tno recovery target specified\n2\t0/5000000\tno recovery target specified\n"; got != want {
		t.Fatalf("00000004.history = %q, want %q", got, want)
	}
	if b, _ := os.ReadFile(filepath.Join(wal, "00000002.history")); string(b) != kept {
		t.Fatalf("00000002.history rewritten: %q", b)
	}
	if _, err := os.Stat(filepath.Join(wal, "00000003.history")); !os.IsNotExist(err) {
		t.Fatalf("00000003.history written for a timeline outside the ancestry: %v", err)
	}
	// Idempotent.
	if written, err := i.CompleteTimelineHistory(); err != nil || len(written) != 0 {
		t.Fatalf("second run wrote %v, %v", written, err)
	}
}
