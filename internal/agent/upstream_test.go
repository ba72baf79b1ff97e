package agent

import (
	"testing"

	"github.com/holdfast/holdfast/internal/postgres"
)

func TestStreamsElsewhere(t *testing.T) {
	want := postgres.ConnInfo{Host: "127.0.0.1", Port: 5433}
	for _, tt := range []struct {
		name string
		st   postgres.Status
		want bool
	}{
		{"no receiver", postgres.Status{InRecovery: true}, false},
		{"starting, not connected", postgres.Status{WalReceiverStatus: "starting"}, false},
		{"streaming from the upstream", postgres.Status{WalReceiverStatus: "streaming", SenderHost: "127.0.0.1", SenderPort: 5433}, false},
		{"host not reported", postgres.Status{WalReceiverStatus: "streaming", SenderPort: 5433}, false},
		// The case a reload cannot fix: still connected to the previous
		// upstream after re-pointing at a timeline switch.
		{"streaming from the previous upstream", postgres.Status{WalReceiverStatus: "streaming", SenderHost: "127.0.0.1", SenderPort: 5434}, true},
		{"waiting on the previous upstream", postgres.Status{WalReceiverStatus: "waiting", SenderHost: "127.0.0.1", SenderPort: 5434}, true},
		{"same port on another host", postgres.Status{WalReceiverStatus: "streaming", SenderHost: "10.0.0.2", SenderPort: 5433}, true},
	} {
		if got := streamsElsewhere(tt.st, want); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}
