package proxy

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the proxy's Prometheus metrics, served at /metrics on
// Config.AdminAddr. Counters on the hot path (queries, transactions) are
// label children resolved once per endpoint (endpointMetrics), so counting
// costs an atomic add and no allocation. Gauges of current state (clients,
// server connections, waiting clients, serving or holding, goroutines) and
// the connections ended by cause (atomic counts the status also shows) are
// read at scrape time by a custom collector, so they cost nothing between
// scrapes and are never stale.
type metrics struct {
	holdWindow   time.Duration
	reg          *prometheus.Registry
	accepted     *prometheus.CounterVec   // endpoint
	loginsFailed *prometheus.CounterVec   // endpoint, reason
	queries      *prometheus.CounterVec   // endpoint
	transactions *prometheus.CounterVec   // endpoint
	errors       *prometheus.CounterVec   // endpoint, sqlstate, source
	wait         *prometheus.HistogramVec // endpoint, reason
	held         *prometheus.CounterVec   // endpoint, outcome
	resolved     *prometheus.CounterVec   // endpoint, outcome
}

// endpointMetrics are one endpoint's pre-resolved label children.
type endpointMetrics struct {
	accepted, queries, transactions prometheus.Counter
	waitWriter, waitPool            prometheus.Observer
	served, timedOut, rejected      prometheus.Counter
	resolved                        [outcomeCount]prometheus.Counter // by outcome
}

// Login failure reasons (logins_failed_total), by the SQLSTATE of the FATAL
// the client got: see loginFailure.
const (
	loginAuth        = "auth"        // 28xxx: wrong password, unknown user, TLS required, ...
	loginProtocol    = "protocol"    // 08P01, 0A000: malformed startup, unsupported protocol
	loginLimit       = "limit"       // 53300: max_clients or max_waiting reached
	loginUnavailable = "unavailable" // 57P03: no server within the hold window
	loginOther       = "other"       // anything else (e.g. 3D000 from the server)
)

// Hold outcomes (held_total).
const (
	heldServed   = "served"
	heldTimeout  = "timeout"
	heldRejected = "rejected"
)

// waitBuckets span 1 ms to 30 s (the default hold_window).
var waitBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

func newMetrics(s *Server) *metrics {
	opts := func(name, help string) prometheus.CounterOpts {
		return prometheus.CounterOpts{Namespace: "holdfast", Subsystem: "proxy", Name: name, Help: help}
	}
	m := &metrics{
		holdWindow: s.cfg.HoldWindow,
		reg:        prometheus.NewRegistry(),
		accepted: prometheus.NewCounterVec(opts("client_connections_total",
			"Client connections accepted."), []string{"endpoint"}),
		loginsFailed: prometheus.NewCounterVec(opts("client_logins_failed_total",
			"Client logins refused with a FATAL error, by reason (auth, protocol, limit, unavailable, other)."), []string{"endpoint", "reason"}),
		queries: prometheus.NewCounterVec(opts("queries_total",
			"Statements sent by clients: simple Query messages and extended-protocol Execute messages."), []string{"endpoint"}),
		transactions: prometheus.NewCounterVec(opts("transactions_total",
			"Transactions completed (committed or rolled back): each ReadyForQuery 'I' from a server, which ends a transaction block or statements run outside one."), []string{"endpoint"}),
		errors: prometheus.NewCounterVec(opts("errors_total",
			"ErrorResponses sent to clients, by SQLSTATE; source is server (passed on) or proxy (made by the proxy)."), []string{"endpoint", "sqlstate", "source"}),
		wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "holdfast", Subsystem: "proxy", Name: "wait_seconds",
			Help:    "How long clients waited: for a writer to be known or a planned switchover to end (reason writer), for a free slot in a full pool (reason pool).",
			Buckets: waitBuckets}, []string{"endpoint", "reason"}),
		held: prometheus.NewCounterVec(opts("held_total",
			"Clients that waited for a writer (failover or planned switchover), by outcome: served, timeout (hold_window passed), rejected (max_waiting reached)."), []string{"endpoint", "outcome"}),
		resolved: prometheus.NewCounterVec(opts("commits_resolved_total",
			"COMMITs lost with their server and looked up on the new primary, by outcome: committed, rolled_back, id_reused (found committed, but under an id the new primary had handed out again: rolled back), unknown (08007)."), []string{"endpoint", "outcome"}),
	}
	m.reg.MustRegister(m.accepted, m.loginsFailed, m.queries, m.transactions, m.errors, m.wait, m.held, m.resolved,
		&stateCollector{s: s}, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// forEndpoint resolves an endpoint's label children (so that its series
// exist, at 0, from the start).
func (m *metrics) forEndpoint(name string) *endpointMetrics {
	for _, r := range []string{loginAuth, loginProtocol, loginLimit, loginUnavailable, loginOther} {
		m.loginsFailed.WithLabelValues(name, r)
	}
	em := &endpointMetrics{
		accepted:     m.accepted.WithLabelValues(name),
		queries:      m.queries.WithLabelValues(name),
		transactions: m.transactions.WithLabelValues(name),
		waitWriter:   m.wait.WithLabelValues(name, "writer"),
		waitPool:     m.wait.WithLabelValues(name, "pool"),
		served:       m.held.WithLabelValues(name, heldServed),
		timedOut:     m.held.WithLabelValues(name, heldTimeout),
		rejected:     m.held.WithLabelValues(name, heldRejected),
	}
	for o := range outcomeCount {
		em.resolved[o] = m.resolved.WithLabelValues(name, o.String())
	}
	return em
}

// fromClient counts a client message about to go to a server.
func (m *metrics) fromClient(ep *endpoint, msg []byte) {
	if msg[0] == 'Q' || msg[0] == 'E' {
		ep.m.queries.Inc()
	}
}

// fromServer counts a server message about to be passed to the client.
func (m *metrics) fromServer(ep *endpoint, msg []byte) {
	switch msg[0] {
	case 'Z':
		if len(msg) == 6 && msg[5] == 'I' {
			ep.m.transactions.Inc()
		}
	case 'E':
		m.errors.WithLabelValues(ep.name, errorCode(msg), "server").Inc()
	}
}

// sent counts the ErrorResponses among messages the proxy made.
func (m *metrics) sent(ep *endpoint, msgs [][]byte) {
	for _, msg := range msgs {
		if len(msg) > 0 && msg[0] == 'E' {
			m.errors.WithLabelValues(ep.name, errorCode(msg), "proxy").Inc()
		}
	}
}

// fatal counts a FATAL the proxy sends to end a session; before the session
// is logged in (it gets its cancel key only then) it is a failed login.
func (m *metrics) fatal(ss *session, code string) {
	code = sqlstateLabel(code)
	m.errors.WithLabelValues(ss.ep.name, code, "proxy").Inc()
	if ss.key.pid == 0 {
		m.loginsFailed.WithLabelValues(ss.ep.name, loginFailure(code)).Inc()
	}
}

// commitResolved counts a lost COMMIT looked up, by outcome.
func (m *metrics) commitResolved(ep *endpoint, o outcome) { ep.m.resolved[o].Inc() }

// accept counts an accepted client connection.
func (m *metrics) accept(ep *endpoint) { ep.m.accepted.Inc() }

// heldRejected counts a client refused because max_waiting clients wait.
func (m *metrics) heldRejected(ep *endpoint) { ep.m.rejected.Inc() }

// heldDone records a wait for a writer that began at start and ended with
// err (nil: a writer became known).
func (m *metrics) heldDone(ep *endpoint, start time.Time, err error) {
	ep.m.waitWriter.Observe(time.Since(start).Seconds())
	if err != nil {
		ep.m.timedOut.Inc()
		return
	}
	ep.m.served.Inc()
}

// heldSwitchover runs wait (holding a session's next transaction during a
// planned switchover) and records it like a wait for a writer; a wait that
// lasted the whole hold window counts as a timeout.
func (m *metrics) heldSwitchover(ep *endpoint, wait func()) {
	start := time.Now()
	wait()
	d := time.Since(start)
	ep.m.waitWriter.Observe(d.Seconds())
	if d >= m.holdWindow {
		ep.m.timedOut.Inc()
		return
	}
	ep.m.served.Inc()
}

// acquire is p.acquire, timing the wait when the pool is full (no idle
// connection, no free slot), so that wait_seconds{reason="pool"} sees real
// waits and not the dialling of new connections.
func (m *metrics) acquire(ctx context.Context, ep *endpoint, p *pool) (*serverConn, error) {
	if !p.full() {
		return p.acquire(ctx)
	}
	start := time.Now()
	sc, err := p.acquire(ctx)
	ep.m.waitPool.Observe(time.Since(start).Seconds())
	return sc, err
}

// full reports whether an acquire now would have to wait for a release.
// Only metrics use it: the answer may be stale by the time acquire runs.
func (p *pool) full() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle) == 0 && p.open >= p.size
}

// loginFailure classifies a FATAL sent during login by its SQLSTATE.
func loginFailure(code string) string {
	switch {
	case len(code) == 5 && code[:2] == "28":
		return loginAuth
	case code == "08P01" || code == "0A000":
		return loginProtocol
	case code == "53300":
		return loginLimit
	case code == "57P03":
		return loginUnavailable
	}
	return loginOther
}

// errorCode returns the SQLSTATE (field 'C') of an ErrorResponse, without
// decoding the other fields.
func errorCode(msg []byte) string {
	if len(msg) < 5 {
		return sqlstateLabel("")
	}
	b := msg[5:]
	for len(b) > 0 && b[0] != 0 {
		f := b[0]
		end := 1
		for end < len(b) && b[end] != 0 {
			end++
		}
		if end == len(b) {
			break // unterminated
		}
		if f == 'C' {
			return sqlstateLabel(string(b[1:end]))
		}
		b = b[end+1:]
	}
	return sqlstateLabel("")
}

// sqlstateLabel bounds the label's values: a SQLSTATE is five digits or
// upper-case letters; anything else is "XXXXX".
func sqlstateLabel(code string) string {
	if len(code) != 5 {
		return "XXXXX"
	}
	for i := 0; i < 5; i++ {
		if c := code[i]; (c < '0' || c > '9') && (c < 'A' || c > 'Z') {
			return "XXXXX"
		}
	}
	return code
}

// stateCollector reports the proxy's current state at scrape time.
type stateCollector struct{ s *Server }

var (
	descClients = prometheus.NewDesc("holdfast_proxy_client_connections",
		"Client connections open now (including those logging in).", []string{"endpoint"}, nil)
	descServers = prometheus.NewDesc("holdfast_proxy_server_connections",
		"Server connections in the pools: active (lent to a client) or idle.", []string{"endpoint", "member", "state"}, nil)
	descPoolWaiting = prometheus.NewDesc("holdfast_proxy_pool_waiting",
		"Clients waiting for a server connection of a full pool.", []string{"endpoint", "member"}, nil)
	descState = prometheus.NewDesc("holdfast_proxy_state",
		"1 while the endpoint serves (writer: a writer is known and no planned switchover holds new work; reader: a replica qualifies, or a writer is known and reader_fallback_to_primary is on), 0 while new work waits (holding) or is refused.", []string{"endpoint"}, nil)
	descWaiting = prometheus.NewDesc("holdfast_proxy_waiting",
		"Clients waiting for a writer: during a failover (at most max_waiting) or a planned switchover.", nil, nil)
	descParked = prometheus.NewDesc("holdfast_proxy_client_connections_parked",
		"Client connections idle long enough (no server connection, outside a transaction) that a small waiter holds them instead of a relay.", []string{"endpoint"}, nil)
	descEnded = prometheus.NewDesc("holdfast_proxy_client_connections_ended_total",
		"Client connections that ended, by cause: terminate, client_eof, client_reset (the client left); idle_timeout, server_lost, unavailable, protocol (the proxy ended the session); login_failed, cancel_request (never a session); shutdown; other. Accepted connections (client_connections_total) minus these are the ones open (client_connections).", []string{"endpoint", "cause"}, nil)
	descGoroutines = prometheus.NewDesc("holdfast_proxy_goroutines",
		"Goroutines serving clients: one per client connection (logging in, relaying or parked), one per server connection lent to a client, one per lost COMMIT being looked up. 0 with no client; go_goroutines counts the whole process.", nil, nil)
)

// Describe implements prometheus.Collector.
func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descClients, descParked, descEnded, descGoroutines, descServers, descPoolWaiting, descState, descWaiting} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	_, haveWriter, _ := s.router.Writer()
	for _, ep := range s.endpoints {
		ch <- prometheus.MustNewConstMetric(descClients, prometheus.GaugeValue, float64(ep.clients.Load()), ep.name)
		ch <- prometheus.MustNewConstMetric(descParked, prometheus.GaugeValue, float64(ep.parked.Load()), ep.name)
		for c := causeTerminate; c < causeCount; c++ {
			ch <- prometheus.MustNewConstMetric(descEnded, prometheus.CounterValue, float64(ep.ended[c].Load()), ep.name, c.String())
		}
		serving := haveWriter && s.hold.Load() == nil
		if !ep.writer {
			serving = len(s.router.Readers()) > 0 || (s.cfg.ReaderFallbackToPrimary && haveWriter)
		}
		ch <- prometheus.MustNewConstMetric(descState, prometheus.GaugeValue, b2f(serving), ep.name)
	}
	ch <- prometheus.MustNewConstMetric(descWaiting, prometheus.GaugeValue, float64(s.waiting.Load()))
	ch <- prometheus.MustNewConstMetric(descGoroutines, prometheus.GaugeValue, float64(s.goroutines.Load()))
	type key struct{ endpoint, member string }
	type counts struct{ active, idle, waiting int }
	byMember := map[key]*counts{}
	var order []key
	for _, p := range s.Pools() {
		k := key{p.Endpoint, p.Member}
		n := byMember[k]
		if n == nil {
			n = &counts{}
			byMember[k] = n
			order = append(order, k)
		}
		n.active += p.Active
		n.idle += p.Idle
		n.waiting += p.Waiting
	}
	for _, k := range order {
		n := byMember[k]
		ch <- prometheus.MustNewConstMetric(descServers, prometheus.GaugeValue, float64(n.active), k.endpoint, k.member, "active")
		ch <- prometheus.MustNewConstMetric(descServers, prometheus.GaugeValue, float64(n.idle), k.endpoint, k.member, "idle")
		ch <- prometheus.MustNewConstMetric(descPoolWaiting, prometheus.GaugeValue, float64(n.waiting), k.endpoint, k.member)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
