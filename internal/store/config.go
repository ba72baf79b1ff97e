package store

import (
	"fmt"
	"time"
)

// Config says which etcd to use and which cluster's keys to touch.
type Config struct {
	// Cluster names the key prefix /holdfast/<Cluster>/; several holdfast
	// clusters can share one etcd.
	Cluster   string
	Endpoints []string
	// DialTimeout bounds the client's connection set-up steps and its
	// keepalive pings. Open itself does not wait for a connection.
	DialTimeout time.Duration
	// RequestTimeout bounds every call unless the caller's context ends
	// sooner. It must stay well below the lease TTL: an agent that waits
	// longer than its TTL for an answer has lost its lease anyway.
	RequestTimeout time.Duration
	// MaxEvents is how many events the log keeps; older ones are trimmed.
	MaxEvents int
}

// DefaultConfig returns the defaults; Cluster and Endpoints must still be set.
func DefaultConfig() Config {
	return Config{
		DialTimeout:    2 * time.Second,
		RequestTimeout: 2 * time.Second,
		MaxEvents:      10000,
	}
}

// withDefaults fills zero fields, so that callers only set what they mean.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.DialTimeout == 0 {
		c.DialTimeout = d.DialTimeout
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = d.RequestTimeout
	}
	if c.MaxEvents == 0 {
		c.MaxEvents = d.MaxEvents
	}
	return c
}

// Validate reports the first invalid field by name.
func (c Config) Validate() error {
	if err := validName(c.Cluster); err != nil {
		return fmt.Errorf("store config: cluster: %w", err)
	}
	if len(c.Endpoints) == 0 {
		return fmt.Errorf("store config: endpoints is empty: give at least one etcd client URL such as http://127.0.0.1:2379")
	}
	for i, ep := range c.Endpoints {
		if ep == "" {
			return fmt.Errorf("store config: endpoints[%d] is empty", i)
		}
	}
	if c.DialTimeout <= 0 {
		return fmt.Errorf("store config: dial timeout %s must be positive", c.DialTimeout)
	}
	if c.RequestTimeout <= 0 {
		return fmt.Errorf("store config: request timeout %s must be positive", c.RequestTimeout)
	}
	if c.MaxEvents < 1 {
		return fmt.Errorf("store config: max events %d must be at least 1", c.MaxEvents)
	}
	return nil
}
