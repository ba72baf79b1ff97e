package web

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/holdfast/holdfast/internal/drill"
)

// metrics are the lab's: what its load and its drills did.
type metrics struct {
	writes *prometheus.CounterVec
	drills *prometheus.CounterVec
	lost   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "holdfast_lab_writes_total",
			Help: "Writes sent by the dashboard's load and drills, by path and outcome (ok, error, unknown)."}, []string{"path", "outcome"}),
		drills: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "holdfast_lab_drills_total",
			Help: "Drills run from the dashboard, by scenario, path and result (done, failed)."}, []string{"scenario", "path", "result"}),
		lost: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "holdfast_lab_lost_acknowledged_writes_total",
			Help: "Acknowledged writes the dashboard's drills found missing from the database, by scenario and path."}, []string{"scenario", "path"}),
	}
	if reg != nil {
		reg.MustRegister(m.writes, m.drills, m.lost)
	}
	return m
}

func (m *metrics) write(path string, r drill.Record) {
	m.writes.WithLabelValues(path, string(r.Outcome)).Inc()
}
