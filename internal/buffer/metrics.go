package buffer

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the buffer's Prometheus metrics (namespace holdfast,
// subsystem buffer). Depths are read at scrape time by a collector, so they
// are never stale; latencies are histograms observed as writes are stored
// and committed.
type metrics struct {
	accepted   prometheus.Counter
	rejected   *prometheus.CounterVec // reason: the problem's HTTP status
	ackLatency prometheus.Histogram
	commitLat  prometheus.Histogram
	attempts   prometheus.Histogram
	outcomes   *prometheus.CounterVec // outcome
	groupTime  prometheus.Histogram
	groupSize  prometheus.Histogram
}

// Write outcomes (writes_settled_total).
const (
	outcomeCommitted  = "committed"
	outcomeDuplicate  = "duplicate"
	outcomeRetry      = "permanent_failure_retry"
	outcomeDead       = "dead_lettered"
	outcomeRedriven   = "redriven"
	outcomeDropped    = "dropped"
	metricsNamespace  = "holdfast"
	metricsSubsystem  = "buffer"
	scrapeStatTimeout = 2 * time.Second
)

var (
	// ackBuckets span 250 µs to 10 s (the append timeout).
	ackBuckets = []float64{.00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10}
	// commitBuckets span 1 ms (applied at once) to an hour (a long outage).
	commitBuckets = []float64{.001, .005, .01, .05, .1, .5, 1, 5, 10, 30, 60, 300, 900, 3600}
)

func newMetrics(reg prometheus.Registerer, s *Service) *metrics {
	m := &metrics{
		accepted: prometheus.NewCounter(prometheus.CounterOpts{Namespace: metricsNamespace, Subsystem: metricsSubsystem,
			Name: "writes_accepted_total", Help: "Writes acknowledged to clients (stored durably in JetStream)."}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metricsNamespace, Subsystem: metricsSubsystem,
			Name: "writes_refused_total", Help: "Writes refused by ingest, by HTTP status (400 bad input, 413 too large, 415 not JSON, 503 not stored)."}, []string{"status"}),
		ackLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: metricsNamespace, Subsystem: metricsSubsystem,
			Name: "ack_latency_seconds", Help: "From a write's arrival to its acknowledgement (stored and fsynced).", Buckets: ackBuckets}),
		commitLat: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: metricsNamespace, Subsystem: metricsSubsystem,
			Name: "commit_latency_seconds", Help: "From a write's acceptance to its commit in PostgreSQL.", Buckets: commitBuckets}),
		attempts: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: metricsNamespace, Subsystem: metricsSubsystem,
			Name: "write_attempts", Help: "Attempts a write took to commit (permanent failures count; transient retries do not).",
			Buckets: []float64{1, 2, 3, 5, 10, 15, 20, 25}}),
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metricsNamespace, Subsystem: metricsSubsystem,
			Name: "writes_settled_total", Help: "What became of writes: committed, duplicate (redelivered, no second effect), permanent_failure_retry, dead_lettered, redriven, dropped."}, []string{"outcome"}),
	}
	for _, o := range []string{outcomeCommitted, outcomeDuplicate, outcomeRetry, outcomeDead, outcomeRedriven, outcomeDropped} {
		m.outcomes.WithLabelValues(o)
	}
	transient := prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: metricsNamespace, Subsystem: metricsSubsystem,
		Name: "transient_retries_total", Help: "Writes whose batch was retried after a transient failure (database down, read-only, serialization); these do not count toward the dead-letter limit."},
		func() float64 { return float64(s.committer.Retried.Load()) })
	awaiting := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: metricsNamespace, Subsystem: metricsSubsystem,
		Name: "batches_awaiting_standby_regions", Help: "Committed batches whose acknowledgement waits until every standby region has received them (JetStream keeps them meanwhile)."},
		func() float64 { return float64(s.committer.awaitingRegions.Load()) })
	redelivered := prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: metricsNamespace, Subsystem: metricsSubsystem,
		Name: "region_redeliveries_total", Help: "Committed batches applied again because the primary changed before every standby region had them (duplicates have no second effect)."},
		func() float64 { return float64(s.committer.Redelivered.Load()) })
	byPurge := prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: metricsNamespace, Subsystem: metricsSubsystem,
		Name: "batches_acknowledged_total", Help: "Batches acknowledged to JetStream: by a purge of the stream up to the first batch not yet settled (one write for many), or one by one (when another process holds batches of the queue, or behind a batch sent back).",
		ConstLabels: prometheus.Labels{"how": "purge"}}, func() float64 { return float64(s.committer.AckedByPurge.Load()) })
	singly := prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: metricsNamespace, Subsystem: metricsSubsystem,
		Name: "batches_acknowledged_total", Help: "Batches acknowledged to JetStream: by a purge of the stream up to the first batch not yet settled (one write for many), or one by one (when another process holds batches of the queue, or behind a batch sent back).",
		ConstLabels: prometheus.Labels{"how": "single"}}, func() float64 { return float64(s.committer.AckedSingly.Load()) })
	purging := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: metricsNamespace, Subsystem: metricsSubsystem,
		Name: "acknowledging_by_purge", Help: "1 while the committer alone holds what is pending in the queue and acknowledges by purges; 0 while it acknowledges one by one."},
		func() float64 {
			if s.committer.Purging.Load() {
				return 1
			}
			return 0
		})
	m.groupTime = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: metricsNamespace, Subsystem: metricsSubsystem,
		Name: "apply_group_seconds", Help: "How long the committer took to apply one group of batches in one transaction and read its commit position (transient retries included).",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}})
	m.groupSize = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: metricsNamespace, Subsystem: metricsSubsystem,
		Name: "apply_group_writes", Help: "Writes applied in one committer transaction (a group of up to 512 batches).",
		Buckets: prometheus.ExponentialBuckets(1, 2, 12)})
	reg.MustRegister(m.accepted, m.rejected, m.ackLatency, m.commitLat, m.attempts, m.outcomes, m.groupTime, m.groupSize, transient, awaiting, redelivered, byPurge, singly, purging, &depthCollector{s: s})
	return m
}

// appliedGroup records one committer transaction.
func (m *metrics) appliedGroup(batches, writes int, took time.Duration) {
	m.groupTime.Observe(took.Seconds())
	m.groupSize.Observe(float64(writes))
}

// settled records a committer outcome.
func (m *metrics) settled(b settledBatch) {
	for _, w := range b.applied {
		m.commitLat.Observe(b.commitTime.Sub(w.AcceptedAt).Seconds())
		m.attempts.Observe(float64(w.Attempts + 1))
	}
	m.outcomes.WithLabelValues(outcomeCommitted).Add(float64(len(b.applied) - b.duplicates))
	m.outcomes.WithLabelValues(outcomeDuplicate).Add(float64(b.duplicates))
	m.outcomes.WithLabelValues(outcomeRetry).Add(float64(len(b.again)))
	m.outcomes.WithLabelValues(outcomeDead).Add(float64(len(b.dead)))
}

var (
	pendingDesc = prometheus.NewDesc("holdfast_buffer_pending_writes", "Writes accepted and not yet committed or dead-lettered.", nil, nil)
	oldestDesc  = prometheus.NewDesc("holdfast_buffer_oldest_pending_seconds", "Age of the oldest pending write (0 when none).", nil, nil)
	deadDesc    = prometheus.NewDesc("holdfast_buffer_dead_letter_writes", "Writes in the dead-letter stream (holdfast dlq list).", nil, nil)
)

// depthCollector reads the depths at scrape time.
type depthCollector struct{ s *Service }

func (c *depthCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- pendingDesc
	ch <- oldestDesc
	ch <- deadDesc
}

func (c *depthCollector) Collect(ch chan<- prometheus.Metric) {
	n, oldest := c.s.index.depth()
	age := 0.0
	if !oldest.IsZero() {
		age = time.Since(oldest).Seconds()
	}
	ch <- prometheus.MustNewConstMetric(pendingDesc, prometheus.GaugeValue, float64(n))
	ch <- prometheus.MustNewConstMetric(oldestDesc, prometheus.GaugeValue, age)
	ctx, cancel := context.WithTimeout(context.Background(), scrapeStatTimeout)
	defer cancel()
	if d, err := deadCount(ctx, c.s.js, c.s.cfg.Committer); err == nil {
		ch <- prometheus.MustNewConstMetric(deadDesc, prometheus.GaugeValue, float64(d))
	}
}
