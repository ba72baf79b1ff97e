package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/holdfast/holdfast/internal/cluster"
)

// metrics are the agent's Prometheus metrics, served on the member's
// metrics_port at /metrics.
type metrics struct {
	reg        *prometheus.Registry
	role       *prometheus.GaugeVec
	leader     prometheus.Gauge
	leaseValid prometheus.Gauge
	pgUp       prometheus.Gauge
	timeline   prometheus.Gauge
	lsn        prometheus.Gauge
	generation prometheus.Gauge
	lag        *prometheus.GaugeVec
	replayLag  *prometheus.GaugeVec // no labels: absent while unknown
	hbLag      *prometheus.GaugeVec // label region: absent while unknown
	syncSet    prometheus.Gauge
	events     *prometheus.CounterVec
}

func newMetrics(member string) *metrics {
	reg := prometheus.NewRegistry()
	labels := prometheus.Labels{"member": member}
	g := func(name, help string) prometheus.Gauge {
		m := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "holdfast", Subsystem: "member", Name: name, Help: help, ConstLabels: labels})
		reg.MustRegister(m)
		return m
	}
	m := &metrics{
		reg:        reg,
		leader:     g("leader", "1 while this member holds its region's leader key."),
		leaseValid: g("lease_valid", "1 while the agent's lease is certainly alive beyond the demote margin."),
		pgUp:       g("postgres_up", "1 while PostgreSQL runs and answers."),
		timeline:   g("timeline", "PostgreSQL timeline."),
		lsn:        g("wal_lsn_bytes", "Current WAL position (primary: write LSN; replica: received or replayed)."),
		generation: g("generation", "Topology generation the member acts under."),
		syncSet:    g("sync_set_size", "Members in the synchronous set (as recorded in etcd)."),
		role: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "holdfast", Subsystem: "member", Name: "role",
			Help: "1 for the member's current role.", ConstLabels: labels}, []string{"role"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "holdfast", Subsystem: "member", Name: "replica_lag_bytes",
			Help: "On the primary: how far each replica's flush position is behind.", ConstLabels: labels}, []string{"replica"}),
		replayLag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "holdfast", Subsystem: "member", Name: "replay_lag_seconds",
			Help: "On a replica: how far replay is behind in time, as published (0 once all received WAL is replayed). Absent while unknown.", ConstLabels: labels}, nil),
		hbLag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "holdfast", Subsystem: "member", Name: "heartbeat_lag_seconds",
			Help: "On a replica: replication lag in time measured end to end by the primary's heartbeat row (age of the newest heartbeat when first seen, or how overdue the next one is). Absent while unknown.", ConstLabels: labels}, []string{"region"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "holdfast", Subsystem: "member", Name: "events_total",
			Help: "Events this agent recorded (promoted, demoted, postgres-crashed, failover-blocked, ...).", ConstLabels: labels}, []string{"kind"}),
	}
	reg.MustRegister(m.role, m.lag, m.replayLag, m.hbLag, m.events, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) observe(pub cluster.Member, leader, leaseValid bool, syncSet int) {
	for _, r := range []cluster.Role{cluster.RolePrimary, cluster.RoleReplica, cluster.RoleStandbyLeader, cluster.RoleUnknown} {
		v := 0.0
		if pub.Role == r {
			v = 1
		}
		m.role.WithLabelValues(string(r)).Set(v)
	}
	m.leader.Set(b2f(leader))
	m.leaseValid.Set(b2f(leaseValid))
	m.pgUp.Set(b2f(pub.State == cluster.StateRunning))
	m.timeline.Set(float64(pub.Timeline))
	m.lsn.Set(float64(pub.LSN))
	m.generation.Set(float64(pub.Generation))
	m.syncSet.Set(float64(syncSet))
	m.lag.Reset()
	for _, r := range pub.Replicas {
		m.lag.WithLabelValues(r.Name).Set(float64(cluster.Lag(pub.LSN, r.FlushLSN)))
	}
	if pub.Role == cluster.RoleReplica && pub.ReplayLagMS != nil {
		m.replayLag.WithLabelValues().Set(float64(*pub.ReplayLagMS) / 1000)
	} else {
		m.replayLag.Reset()
	}
	m.hbLag.Reset()
	if pub.Role == cluster.RoleReplica && pub.HeartbeatLagMS != nil {
		m.hbLag.WithLabelValues(pub.Region).Set(float64(*pub.HeartbeatLagMS) / 1000)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// serveMetrics binds the metrics listener (failing at once if the port is
// taken) and serves until ctx ends.
func (a *Agent) serveMetrics(ctx context.Context) (func(), error) {
	if a.me.MetricsPort == 0 {
		return func() {}, nil
	}
	addr := net.JoinHostPort(a.me.Host, fmt.Sprint(a.me.MetricsPort))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("agent %s: metrics listener %s: %w", a.me.Name, addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(a.metrics.reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("metrics server", "err", err)
		}
	}()
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-done
	}, nil
}
