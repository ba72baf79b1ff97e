package proxy

import (
	"errors"
	"fmt"
	"net"
	"time"
)

// Config configures a proxy Server.
type Config struct {
	// WriterAddr follows the primary; ReaderAddr balances over replicas.
	// Empty disables the endpoint.
	WriterAddr string
	ReaderAddr string
	// Region whose leader is the writer.
	Region string
	// MaxMessageSize bounds every client message; larger ones are refused.
	MaxMessageSize int
	// MaxClients bounds client connections per endpoint.
	MaxClients int
	// HoldWindow bounds how long new work waits for a writer.
	HoldWindow time.Duration
	// MaxWaiting bounds how many clients may wait at once.
	MaxWaiting int
	// ReaderMaxLagBytes: replicas further behind serve no reads.
	ReaderMaxLagBytes int64
	// ReaderFallbackToPrimary sends reads to the primary when no replica
	// qualifies.
	ReaderFallbackToPrimary bool
	// ConnectTimeout bounds opening a server connection.
	ConnectTimeout time.Duration
	// StartupTimeout bounds a client's startup and authentication.
	StartupTimeout time.Duration
	// ResolveCommits makes the writer endpoint learn each explicit
	// transaction's id before forwarding its COMMIT, so that a COMMIT lost
	// with the server is answered from the new primary's pg_xact_status
	// instead of with 08007. Experimental: off by default (a client hang
	// was seen under kill -9 with it on; see issue 3's note).
	ResolveCommits bool
}

// DefaultConfig is the configuration `holdfast up` uses.
func DefaultConfig() Config {
	return Config{
		WriterAddr:              "127.0.0.1:6432",
		ReaderAddr:              "127.0.0.1:6433",
		Region:                  "home",
		MaxMessageSize:          64 << 20,
		MaxClients:              20000,
		HoldWindow:              30 * time.Second,
		MaxWaiting:              10000,
		ReaderMaxLagBytes:       16 << 20,
		ReaderFallbackToPrimary: true,
		ConnectTimeout:          5 * time.Second,
		StartupTimeout:          15 * time.Second,
	}
}

// Validate checks the configuration; errors name the field.
func (c Config) Validate() error {
	if c.WriterAddr == "" && c.ReaderAddr == "" {
		return errors.New("proxy: writer_addr and reader_addr are both empty")
	}
	for field, a := range map[string]string{"writer_addr": c.WriterAddr, "reader_addr": c.ReaderAddr} {
		if a == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("proxy: %s %q: %v", field, a, err)
		}
	}
	switch {
	case c.Region == "":
		return errors.New("proxy: region must not be empty")
	case c.MaxMessageSize < 1<<10:
		return fmt.Errorf("proxy: max_message_size %d is below 1024", c.MaxMessageSize)
	case c.MaxClients < 1:
		return fmt.Errorf("proxy: max_clients %d must be positive", c.MaxClients)
	case c.HoldWindow <= 0:
		return errors.New("proxy: hold_window must be positive")
	case c.MaxWaiting < 1:
		return fmt.Errorf("proxy: max_waiting %d must be positive", c.MaxWaiting)
	case c.ConnectTimeout <= 0:
		return errors.New("proxy: connect_timeout must be positive")
	case c.StartupTimeout <= 0:
		return errors.New("proxy: startup_timeout must be positive")
	}
	return nil
}
