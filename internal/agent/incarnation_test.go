package agent

import "testing"

func TestParseIncarnation(t *testing.T) {
	s, f, ok := parseIncarnation(formatIncarnation(1700000000123456, 747))
	if !ok || s != 1700000000123456 || f != 747 {
		t.Fatalf("round trip: %d %d %v", s, f, ok)
	}
	for _, bad := range []string{"", "1", "1 2 3", "x 2", "1 y", "0 5", "5 0", "-1 5", "5 -1"} {
		if _, _, ok := parseIncarnation(bad); ok {
			t.Errorf("parseIncarnation(%q) accepted", bad)
		}
	}
}
