package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/drill"
)

func TestDrillUsageErrors(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"drill"}, "Usage: holdfast drill run"},
		{[]string{"drill", "run", "--scenario", "flood", "--path", "proxy"}, `unknown scenario "flood"`},
		{[]string{"drill", "run", "--scenario", "kill-primary", "--path", "carrier-pigeon"}, `unknown path "carrier-pigeon"`},
		{[]string{"drill", "run", "--scenario", "kill-primary", "--path", "proxy", "--rate", "0"}, "rate 0"},
		{[]string{"drill", "run", "--scenario", "kill-primary", "--path", "proxy", "--duration", "1s"}, "too short"},
		{[]string{"drill", "matrix", "--repeat", "0"}, "--repeat must be at least 1"},
		{[]string{"drill", "chaos", "--kinds", "format-disk"}, `--kinds: unknown fault "format-disk"`},
		{[]string{"drill", "chaos", "--kinds", "kill-etcd"}, "--kinds: kill-etcd is not available yet"},
		{[]string{"drill", "chaos", "--paths", "proxy,carrier-pigeon"}, `--paths: unknown path "carrier-pigeon"`},
		{[]string{"drill", "chaos", "--faults", "0"}, "faults: 0, at least 1"},
		{[]string{"drill", "chaos", "--min-hold", "5s", "--max-hold", "1s"}, "hold: 5s to 1s"},
		{[]string{"drill", "chaos", "--rate", "0"}, "--rate 0"},
		{[]string{"drill", "chaos", "extra"}, "unexpected arguments"},
	} {
		code, out, errs := runCLI(tt.args...)
		if code != exitInvalid || !strings.Contains(out+errs, tt.want) {
			t.Errorf("holdfast %v = %d %q %q; want exit 2 and %q", tt.args, code, out, errs, tt.want)
		}
	}
}

func TestMatrixSpread(t *testing.T) {
	rep := func(s, p string, down int64) drill.Report {
		return drill.Report{Scenario: s, Path: p, DowntimeMS: down, RecoveryMS: down / 2}
	}
	reports := []drill.Report{rep("kill-primary", "proxy", 300), rep("kill-primary", "proxy", 100), rep("kill-primary", "proxy", 200),
		rep("kill-primary", "buffer", 50), rep("kill-primary", "buffer", 70), rep("kill-primary", "buffer", 60)}
	var out bytes.Buffer
	printMatrixSpread(&out, reports, true)
	var got struct{ Cells []matrixCell }
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Cells) != 2 || len(got.Cells[0].Runs) != 3 || got.Cells[0].Spread["downtime_ms"] != (drill.Spread{Min: 100, Median: 200, Max: 300}) ||
		got.Cells[1].Spread["downtime_ms"].Median != 60 {
		t.Fatalf("cells %+v", got.Cells)
	}
	out.Reset()
	printMatrixSpread(&out, reports, false)
	if !strings.Contains(out.String(), "100 200 300") {
		t.Fatalf("table:\n%s", out.String())
	}
}
