package main

import (
	"strings"
	"testing"
)

func TestRegionUsageErrors(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"region"}, "Usage: holdfast region status"},
		{[]string{"region", "teleport"}, "Usage: holdfast region status"},
		{[]string{"region", "switchover"}, "Usage: holdfast region status"},
		{[]string{"region", "status", "extra"}, "Usage: holdfast region status"},
		{[]string{"region", "switchover", "--to"}, "flag needs an argument"},
		{[]string{"region", "failover"}, "Usage: holdfast region status"},
		{[]string{"region", "failover", "--to", "away", "--allow-data-loss=maybe"}, "invalid boolean"},
	} {
		code, out, errs := runCLI(tt.args...)
		if code != exitInvalid || !strings.Contains(out+errs, tt.want) {
			t.Errorf("holdfast %v = %d %q %q; want exit 2 and %q", tt.args, code, out, errs, tt.want)
		}
	}
}
