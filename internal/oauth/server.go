package oauth

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// TokenPath is the token endpoint's path.
	TokenPath = "/oauth2/token"
	// JWKSPath is the path of the public keys.
	JWKSPath = "/.well-known/jwks.json"
	// realm is the realm of every WWW-Authenticate challenge.
	realm = "holdfast"
	// reloadInterval is how often at most the files are checked for changes.
	reloadInterval = time.Second
)

// ServerConfig configures a Server.
type ServerConfig struct {
	// ClientsFile is the clients file, re-read when it changes; a missing
	// file means no clients. Set it or Clients, not both.
	ClientsFile string
	// Clients is a fixed list of clients, for tests and embedding.
	Clients []Client
	// Keys signs and verifies tokens. If it was loaded from a file, the file
	// is re-read when it changes, so a rotation by another process takes
	// effect.
	Keys *KeySet
	// Issuer and Audience are the iss and aud of the tokens, both required.
	Issuer, Audience string
	// TTL is the lifetime of tokens; 0 means DefaultTTL.
	TTL time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Log receives reloads and refusals; nil discards.
	Log *slog.Logger
}

// Validate checks the configuration, naming the wrong field.
func (c ServerConfig) Validate() error {
	switch {
	case c.ClientsFile != "" && c.Clients != nil:
		return errors.New("oauth: ServerConfig: set ClientsFile or Clients, not both")
	case c.ClientsFile == "" && c.Clients == nil:
		return errors.New("oauth: ServerConfig: ClientsFile or Clients is needed")
	case c.Keys == nil || c.Keys.ring.Load() == nil:
		return errors.New("oauth: ServerConfig.Keys is needed: load it with LoadOrCreateKeys")
	case c.Issuer == "":
		return errors.New("oauth: ServerConfig.Issuer is needed (the iss claim, e.g. the API's base URL)")
	case c.Audience == "":
		return errors.New("oauth: ServerConfig.Audience is needed (the aud claim the API requires)")
	case c.TTL != 0 && c.TTL < time.Second:
		return fmt.Errorf("oauth: ServerConfig.TTL %v: want 0 (one hour) or at least a second", c.TTL)
	}
	if c.Clients != nil {
		if err := validateClients(c.Clients); err != nil {
			return fmt.Errorf("oauth: ServerConfig.Clients: %w", err)
		}
	}
	return nil
}

// Server is the authorization server: the token endpoint, the JWKS, and
// Require for the API's routes.
type Server struct {
	issuer      Issuer
	clientsFile string
	clients     atomic.Pointer[map[string]Client]
	now         func() time.Time
	log         *slog.Logger
	// nextCheck is when (Unix ns) the files are next checked for changes.
	nextCheck atomic.Int64

	// verified caches tokens that verified, with their claims, until they
	// expire: checking an Ed25519 signature costs about 40 µs, and a
	// client sends the same token with every request.
	verified verifiedCache

	mu sync.Mutex // serialises reloads of the clients file; guards clientsStat
	// clientsStat is the clients file as last read; nil if it was missing.
	clientsStat os.FileInfo
}

// NewServer checks cfg and loads the clients.
func NewServer(cfg ServerConfig) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Server{
		issuer:      Issuer{Keys: cfg.Keys, Issuer: cfg.Issuer, Audience: cfg.Audience, TTL: cfg.TTL, Now: now},
		clientsFile: cfg.ClientsFile,
		now:         now,
		log:         log.With("component", "oauth"),
	}
	if cfg.ClientsFile == "" {
		s.setClients(cfg.Clients)
		return s, nil
	}
	s.setClients(nil)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.reloadClientsLocked(); err != nil {
		return nil, err
	}
	return s, nil
}

// Issuer is the server's token issuer, e.g. to mint tokens in tests.
func (s *Server) Issuer() *Issuer { return &s.issuer }

// Register adds the token endpoint and the JWKS to mux.
func (s *Server) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST "+TokenPath, s.TokenHandler)
	mux.HandleFunc("GET "+JWKSPath, s.JWKSHandler)
}

// JWKSHandler serves the public keys (GET /.well-known/jwks.json).
func (s *Server) JWKSHandler(w http.ResponseWriter, r *http.Request) {
	s.refresh()
	w.Header().Set("Content-Type", "application/json")
	// Verifiers refetch on an unknown kid; a minute bounds staleness anyway.
	w.Header().Set("Cache-Control", "public, max-age=60")
	_, _ = w.Write(s.issuer.Keys.ring.Load().jwks)
}

// setClients installs a client table.
func (s *Server) setClients(cs []Client) {
	m := make(map[string]Client, len(cs))
	for _, c := range cs {
		c.Scopes = slices.Clone(c.Scopes)
		m[c.ID] = c
	}
	s.clients.Store(&m)
}

// client looks a client up.
func (s *Server) client(id string) (Client, bool) {
	c, ok := (*s.clients.Load())[id]
	return c, ok
}

// refresh re-reads the clients and keys files if they changed, checking at
// most once per reloadInterval; requests between checks pay one atomic load.
func (s *Server) refresh() {
	now := s.now().UnixNano()
	next := s.nextCheck.Load()
	if now < next || !s.nextCheck.CompareAndSwap(next, now+int64(reloadInterval)) {
		return
	}
	if s.clientsFile != "" {
		s.mu.Lock()
		err := s.reloadClientsLocked()
		s.mu.Unlock()
		if err != nil {
			s.log.Warn("clients file not reloaded; the clients loaded before stay in force", "err", err)
		}
	}
	changed, err := s.issuer.Keys.reloadIfChanged()
	switch {
	case err != nil:
		s.log.Warn("keys file not reloaded; the keys loaded before stay in force", "err", err)
	case changed:
		// A removed key must stop verifying cached tokens too.
		s.verified.mu.Lock()
		s.verified.m = nil
		s.verified.mu.Unlock()
		info := s.issuer.Keys.Info()
		s.log.Info("keys reloaded", "signing_kid", info[0].ID, "keys", len(info))
	}
}

// reloadClientsLocked re-reads the clients file if it changed. A missing
// file means no clients. On error the clients in memory stay, and the
// failed version is not retried until it changes again.
func (s *Server) reloadClientsLocked() error {
	fi, err := os.Stat(s.clientsFile)
	if errors.Is(err, fs.ErrNotExist) {
		if s.clientsStat != nil || len(*s.clients.Load()) > 0 {
			s.log.Warn("clients file is missing: no client can get tokens", "path", s.clientsFile)
		}
		s.clientsStat = nil
		s.setClients(nil)
		return nil
	}
	if err != nil {
		return fmt.Errorf("oauth: clients file: %w", err)
	}
	if s.clientsStat != nil && !fileChanged(s.clientsStat, fi) {
		return nil
	}
	b, rfi, err := readPrivateFile(s.clientsFile)
	if err != nil {
		s.clientsStat = fi
		return fmt.Errorf("oauth: clients file: %w", err)
	}
	cs, err := parseClients(s.clientsFile, b)
	if err != nil {
		s.clientsStat = rfi
		return err
	}
	s.clientsStat = rfi
	s.setClients(cs)
	s.log.Info("clients loaded", "path", s.clientsFile, "clients", len(cs))
	return nil
}
