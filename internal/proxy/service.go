package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/holdfast/holdfast/internal/config"
	"github.com/holdfast/holdfast/internal/store"
)

// FromDeploymentRegion maps the deployment config's proxy section for the
// endpoints of region (config.Config.RegionProxy); ok is false when the
// region has none.
func FromDeploymentRegion(d config.Config, region string) (Config, bool) {
	rp, ok := d.RegionProxy(region)
	if !ok {
		return Config{}, false
	}
	c := FromDeployment(d)
	c.WriterAddr, c.ReaderAddr, c.AdminAddr, c.Region = rp.WriterAddr, rp.ReaderAddr, rp.AdminAddr, region
	return c, true
}

// FromDeployment maps the deployment config's proxy section: the
// endpoints of the primary_region.
func FromDeployment(d config.Config) Config {
	c := DefaultConfig()
	p := d.Proxy
	c.WriterAddr, c.ReaderAddr, c.Region = p.WriterAddr, p.ReaderAddr, d.PrimaryRegion
	c.AdminAddr = p.AdminAddr
	c.MaxMessageSize, c.MaxClients = int(p.MaxMessageSize), p.MaxClients
	c.HoldWindow, c.MaxWaiting = p.HoldWindow.D(), p.MaxWaiting
	c.ReaderMaxLag, c.ReaderFallbackToPrimary = p.ReaderMaxLag.D(), p.ReaderFallbackToPrimary
	c.ConnectTimeout = p.ConnectTimeout.D()
	c.PoolMode, c.PoolSize = p.PoolMode, p.PoolSize
	c.ServerIdleTimeout, c.ClientIdleTimeout = p.ServerIdleTimeout.D(), p.ClientIdleTimeout.D()
	c.ResolveCommits, c.Plaintext = p.ResolveCommits, p.Plaintext
	c.DrainTimeout = p.DrainTimeout.D()
	return c
}

// Service is a running proxy with its topology router.
type Service struct {
	*Server
	cancel context.CancelFunc
	done   chan struct{}
}

// Start loads the logins (app and superuser credentials from the secrets
// directory, verifiers from the users file), follows the topology in st and
// opens the endpoints.
func Start(d config.Config, st *store.Store, log *slog.Logger) (*Service, error) {
	return StartRegion(d, d.PrimaryRegion, st, log)
}

// StartRegion is Start for the endpoints of region: its reader serves that
// region's replicas; its writer, like every writer, the global primary.
func StartRegion(d config.Config, region string, st *store.Store, log *slog.Logger) (*Service, error) {
	pc, ok := FromDeploymentRegion(d, region)
	if !ok {
		return nil, fmt.Errorf("proxy: region %q has no proxy endpoints (proxy.enabled, or regions[].proxy)", region)
	}
	log = log.With("region", region)
	var creds []config.Credentials
	for _, f := range []string{config.AppSecrets, config.AdminSecrets} {
		c, err := config.ReadCredentials(filepath.Join(d.Postgres.SecretsDir, f))
		if err != nil {
			return nil, fmt.Errorf("proxy: %w", err)
		}
		creds = append(creds, c)
	}
	users, err := LoadUsers(d.Proxy.UsersFile, creds...)
	if err != nil {
		return nil, err
	}
	if pc.TLS, err = loadTLSIfPresent(d.Proxy.TLSCertFile, d.Proxy.TLSKeyFile); err != nil {
		return nil, err
	}
	if pc.TLS == nil {
		if pc.Plaintext == "never" {
			return nil, fmt.Errorf("proxy: plaintext is never but proxy.tls_cert_file %s does not exist (holdfast up generates it; or set tls_cert_file and tls_key_file)", d.Proxy.TLSCertFile)
		}
		log.With("component", "proxy").Info("no tls certificate: SSLRequest is declined", "tls_cert_file", d.Proxy.TLSCertFile)
	}
	router := NewRouter(st, region, d.Proxy.ReaderMaxLag.D(), log.With("component", "proxy-router"))
	srv, err := New(pc, router, users, log)
	if err != nil {
		return nil, err
	}
	if err := srv.Open(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); router.Run(ctx) }()
	return &Service{Server: srv, cancel: cancel, done: done}, nil
}

// Close stops the endpoints and the router.
func (s *Service) Close() error {
	err := s.Server.Close()
	s.cancel()
	<-s.done
	return err
}
