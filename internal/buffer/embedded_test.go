package buffer

import (
	"net"
	"strings"
	"testing"
)

// TestStartEmbeddedBusyPort: a port in use is an error at once that names
// it, not a 30 s wait for a server that never listens.
func TestStartEmbeddedBusyPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	srv, err := StartEmbedded(EmbeddedConfig{Addr: l.Addr().String(), StoreDir: t.TempDir()})
	if err == nil {
		srv.Close()
		t.Fatal("started on a port in use")
	}
	if !strings.Contains(err.Error(), l.Addr().String()) || !strings.Contains(err.Error(), "cannot listen") {
		t.Fatalf("error does not name the port: %v", err)
	}
}
