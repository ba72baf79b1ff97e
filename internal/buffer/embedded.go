package buffer

import (
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// EmbeddedConfig configures the NATS server `holdfast up` runs.
type EmbeddedConfig struct {
	// Addr is host:port of the client listener ("127.0.0.1:4222").
	Addr string
	// StoreDir holds JetStream's files.
	StoreDir string
}

// Embedded is a running NATS server with JetStream. Every stored message
// is fsynced before the publisher's acknowledgement (sync always): that is
// what lets the buffer acknowledge a write only once it is on disk.
type Embedded struct {
	srv *server.Server
}

// StartEmbedded starts the server and waits until it accepts clients.
func StartEmbedded(cfg EmbeddedConfig) (*Embedded, error) {
	host, portS, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("nats address %q: %w", cfg.Addr, err)
	}
	port, err := strconv.Atoi(portS)
	if err != nil {
		return nil, fmt.Errorf("nats address %q: bad port", cfg.Addr)
	}
	// The server reports a port it cannot listen on only in its log (off
	// here) and then never becomes ready: try the port first, so that a
	// port in use is an error at once that names it.
	l, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("nats: cannot listen on %s: %w", cfg.Addr, err)
	}
	l.Close()
	opts := &server.Options{
		ServerName:             "holdfast",
		Host:                   host,
		Port:                   port,
		JetStream:              true,
		StoreDir:               cfg.StoreDir,
		SyncAlways:             true,
		NoSigs:                 true,
		NoLog:                  true,
		DisableJetStreamBanner: true,
		MaxPayload:             8 << 20,
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("nats: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("nats: not ready for connections on %s within 30s", cfg.Addr)
	}
	return &Embedded{srv: srv}, nil
}

// ClientURL is the URL clients connect to.
func (e *Embedded) ClientURL() string { return e.srv.ClientURL() }

// Close stops the server and waits for it.
func (e *Embedded) Close() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}
