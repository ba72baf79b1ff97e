package proxy

import (
	"crypto/tls"
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
	// AdminAddr serves GET /metrics (Prometheus) and GET /status over HTTP.
	// Empty (the default here; the deployment config's proxy.admin_addr
	// sets it) serves nothing.
	AdminAddr string
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
	// ReaderMaxLag: replicas whose replay is further behind serve no reads
	// (enforced by the Router).
	ReaderMaxLag time.Duration
	// ReaderFallbackToPrimary sends reads to the primary when no replica
	// qualifies.
	ReaderFallbackToPrimary bool
	// ConnectTimeout bounds opening a server connection.
	ConnectTimeout time.Duration
	// StartupTimeout bounds a client's startup and authentication.
	StartupTimeout time.Duration
	// PoolMode is PoolSession or PoolTransaction.
	PoolMode string
	// PoolSize bounds server connections per (member, user, database).
	PoolSize int
	// ServerIdleTimeout closes pooled server connections idle that long
	// (0: never); ClientIdleTimeout closes idle clients (0: never).
	ServerIdleTimeout time.Duration
	ClientIdleTimeout time.Duration
	// DrainTimeout bounds how long a planned switchover waits for the
	// writer sessions' transactions to finish before acknowledging.
	DrainTimeout time.Duration
	// TLS, when set, is offered to clients that send SSLRequest.
	TLS *tls.Config
	// Plaintext is which clients may skip TLS: "loopback", "always" or
	// "never" ("never" needs TLS).
	Plaintext string
	// ResolveCommits makes the writer endpoint learn each explicit
	// transaction's id before forwarding its COMMIT, so that a COMMIT lost
	// with the server is answered from the new primary's pg_xact_status
	// instead of with 08007.
	ResolveCommits bool
}

// Pool modes.
const (
	PoolSession     = "session"
	PoolTransaction = "transaction"
)

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
		ReaderMaxLag:            time.Second,
		PoolMode:                PoolSession,
		PoolSize:                20,
		ServerIdleTimeout:       10 * time.Minute,
		Plaintext:               "loopback",
		ResolveCommits:          true,
		DrainTimeout:            5 * time.Second,
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
	for field, a := range map[string]string{"writer_addr": c.WriterAddr, "reader_addr": c.ReaderAddr, "admin_addr": c.AdminAddr} {
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
	case c.PoolMode != PoolSession && c.PoolMode != PoolTransaction:
		return fmt.Errorf("proxy: pool_mode %q must be session or transaction", c.PoolMode)
	case c.PoolSize < 1:
		return fmt.Errorf("proxy: pool_size %d must be positive", c.PoolSize)
	case c.Plaintext != "loopback" && c.Plaintext != "always" && c.Plaintext != "never":
		return fmt.Errorf("proxy: plaintext %q must be loopback, always or never", c.Plaintext)
	case c.Plaintext == "never" && c.TLS == nil:
		return errors.New("proxy: plaintext is never but no TLS certificate is configured")
	}
	return nil
}
