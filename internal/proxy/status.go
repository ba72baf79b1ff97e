package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Proxy states in Status.
const (
	StateServing = "serving" // a writer is known
	StateHolding = "holding" // no writer, or a planned switchover: new writer work waits (up to hold_window)
)

// Status is what GET /status on the admin address returns and `holdfast
// proxy status` prints. Fields are only ever added.
type Status struct {
	State         string           `json:"state"`
	Writer        *StatusWriter    `json:"writer"` // null while no writer is known
	Clients       map[string]int64 `json:"clients"`
	Parked        map[string]int64 `json:"parked"`  // idle clients held by a small waiter, per endpoint
	Servers       int64            `json:"servers"` // server connections lent to clients
	Waiting       int64            `json:"waiting"` // clients waiting for a writer
	PoolMode      string           `json:"pool_mode"`
	PoolSize      int              `json:"pool_size"`
	Pools         []PoolStats      `json:"pools"`
	HoldWindow    string           `json:"hold_window"`
	UptimeSeconds int64            `json:"uptime_seconds"`
	// Goroutines serving clients (holdfast_proxy_goroutines): with every
	// client idle, clients + servers.
	Goroutines int64 `json:"goroutines"`
	// Ended counts client connections that ended, per endpoint and cause
	// (holdfast_proxy_client_connections_ended_total; causes never seen
	// are left out).
	Ended map[string]map[string]int64 `json:"ended"`
}

// StatusWriter is the member writes go to.
type StatusWriter struct {
	Member string `json:"member"`
	Addr   string `json:"addr"`
}

// Status returns the proxy's state and load.
func (s *Server) Status() Status {
	st := s.Stats()
	out := Status{State: StateHolding, Clients: st.Clients, Parked: st.Parked, Servers: st.Servers, Waiting: st.Waiting,
		PoolMode: s.cfg.PoolMode, PoolSize: s.cfg.PoolSize, Pools: st.Pools, HoldWindow: s.cfg.HoldWindow.String(),
		Goroutines: st.Goroutines, Ended: st.Ended}
	if out.Pools == nil {
		out.Pools = []PoolStats{}
	}
	if t, ok, _ := s.router.Writer(); ok {
		out.Writer = &StatusWriter{Member: t.Name, Addr: t.Addr}
		if s.hold.Load() == nil {
			out.State = StateServing
		}
	}
	if !s.started.IsZero() {
		out.UptimeSeconds = int64(time.Since(s.started).Seconds())
	}
	return out
}

func (s *Server) serveStatus(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(s.Status())
}

// adminServer is the HTTP listener on Config.AdminAddr: GET /metrics
// (Prometheus) and GET /status (Status as JSON).
type adminServer struct {
	ln   net.Listener
	srv  *http.Server
	done chan struct{}
}

// openAdmin binds the admin address (so "address in use" fails at once)
// and serves it until closeAdmin. An empty AdminAddr serves nothing.
func (s *Server) openAdmin() error {
	if s.cfg.AdminAddr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", s.cfg.AdminAddr)
	if err != nil {
		return fmt.Errorf("proxy admin endpoint (metrics, status): %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /status", s.serveStatus)
	a := &adminServer{ln: ln, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}, done: make(chan struct{})}
	s.admin = a
	go func() {
		defer close(a.done)
		if err := a.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("admin server", "addr", s.cfg.AdminAddr, "err", err)
		}
	}()
	return nil
}

// closeAdmin stops the admin server and waits for it.
func (s *Server) closeAdmin() {
	a := s.admin
	if a == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = a.srv.Shutdown(ctx)
	<-a.done
}

// AdminAddr returns the bound admin address ("" when off).
func (s *Server) AdminAddr() string {
	if s.admin == nil {
		return ""
	}
	return s.admin.ln.Addr().String()
}
