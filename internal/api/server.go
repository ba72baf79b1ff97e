// Package api is holdfast's HTTP server (`holdfast up` runs it on
// api.addr): it hosts the durable-write ingest, write status and buffer
// administration routes, and Prometheus /metrics. Administration routes
// require the bearer token in api.admin_token_file.
package api

import (
	"context"
	"crypto/subtle"
	_ "embed" // the OpenAPI document
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/holdfast/holdfast/internal/problem"
)

// Config configures a Server.
type Config struct {
	Addr string
	// AdminToken guards the routes registered through Guard.
	AdminToken string
	// AccessLog, if set, gets one line per request.
	AccessLog *slog.Logger
}

// Server is the HTTP server.
type Server struct {
	cfg      Config
	log      *slog.Logger
	mux      *http.ServeMux
	registry *prometheus.Registry
	metrics  *httpMetrics
	ready    func(ctx context.Context) error
	srv      *http.Server
	ln       net.Listener
	done     chan struct{}
}

// New creates a server; register routes on Mux, then Start it.
func New(cfg Config, log *slog.Logger) *Server {
	s := &Server{cfg: cfg, log: log.With("component", "api"), mux: http.NewServeMux(), registry: prometheus.NewRegistry()}
	s.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.metrics = newHTTPMetrics(s.registry)
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{}))
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
	})
	s.mux.HandleFunc("GET /readyz", s.readyz)
	s.mux.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(openAPI)
	})
	return s
}

//go:embed openapi.json
var openAPI []byte

// readyTimeout bounds the readiness check.
const readyTimeout = 2 * time.Second

// SetReady sets the readiness check of /readyz (before Start); without
// one the server is ready once it listens.
func (s *Server) SetReady(check func(ctx context.Context) error) { s.ready = check }

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		defer cancel()
		if err := s.ready(ctx); err != nil {
			problem.Write(w, http.StatusServiceUnavailable, "", "not ready: "+err.Error())
			return
		}
	}
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write([]byte("ready\n"))
}

// Mux is where components register their routes.
func (s *Server) Mux() *http.ServeMux { return s.mux }

// Registry is the Prometheus registry served at /metrics.
func (s *Server) Registry() *prometheus.Registry { return s.registry }

// Guard requires the admin bearer token: 401 without credentials, 403
// with wrong ones.
func (s *Server) Guard(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		token, ok := strings.CutPrefix(auth, "Bearer ")
		if !ok || token == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="holdfast admin"`)
			problem.Write(w, http.StatusUnauthorized, "Authorization", "administration routes need Authorization: Bearer <token of api.admin_token_file>")
			return
		}
		if s.cfg.AdminToken == "" || subtle.ConstantTimeCompare([]byte(token), []byte(s.cfg.AdminToken)) != 1 {
			problem.Write(w, http.StatusForbidden, "Authorization", "wrong admin token")
			return
		}
		h(w, r)
	}
}

// SetAdminToken sets the token Guard requires (before Start).
func (s *Server) SetAdminToken(t string) { s.cfg.AdminToken = t }

// Start listens and serves in the background.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("api: listen on %s: %w", s.cfg.Addr, err)
	}
	s.ln = ln
	s.srv = &http.Server{
		Handler:           instrument(s.mux, s.metrics, s.cfg.AccessLog),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	s.done = make(chan struct{})
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("api server stopped", "err", err)
		}
	}()
	return nil
}

// Addr is the listening address (after Start).
func (s *Server) Addr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Close stops accepting, lets requests in flight finish (up to ctx), and
// closes the rest.
func (s *Server) Close(ctx context.Context) error {
	if s.srv == nil {
		return nil
	}
	err := s.srv.Shutdown(ctx)
	if err != nil {
		_ = s.srv.Close()
	}
	<-s.done
	return err
}
