package api

import (
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/holdfast/holdfast/internal/problem"
)

// RateLimiter is a token bucket per client.
type RateLimiter struct {
	rate  rate.Limit
	burst int
	now   func() time.Time

	mu      sync.Mutex
	buckets map[string]*rate.Limiter // guarded by mu
}

// NewRateLimiter allows each client perSecond requests with bursts of
// burst; perSecond <= 0 disables limiting.
func NewRateLimiter(perSecond float64, burst int) *RateLimiter {
	return &RateLimiter{rate: rate.Limit(perSecond), burst: burst, now: time.Now, buckets: map[string]*rate.Limiter{}}
}

// Allow takes a token of client's bucket; without one it returns how long
// until the next.
func (l *RateLimiter) Allow(client string) (bool, time.Duration) {
	if l == nil || l.rate <= 0 {
		return true, 0
	}
	l.mu.Lock()
	b, ok := l.buckets[client]
	if !ok {
		b = rate.NewLimiter(l.rate, l.burst)
		l.buckets[client] = b
	}
	l.mu.Unlock()
	now := l.now()
	r := b.ReserveN(now, 1)
	if !r.OK() {
		return false, time.Second
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// limit wraps an authorizer's Require with the per-client rate limit: 429
// with Retry-After (whole seconds, at least 1).
func limit(l *RateLimiter, auth Authorizer) Authorizer { return limitedAuth{l: l, Authorizer: auth} }

type limitedAuth struct {
	Authorizer
	l *RateLimiter
}

func (a limitedAuth) Require(scopes ...string) func(http.HandlerFunc) http.HandlerFunc {
	req := a.Authorizer.Require(scopes...)
	return func(h http.HandlerFunc) http.HandlerFunc {
		return req(func(w http.ResponseWriter, r *http.Request) {
			client := a.ClientID(r.Context())
			if ok, wait := a.l.Allow(client); !ok {
				w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(max(wait, time.Second).Seconds()))))
				problem.Write(w, http.StatusTooManyRequests, "", "client "+client+" is over its rate limit (api.rate_limit)")
				return
			}
			h(w, r)
		})
	}
}

// httpMetrics count requests by route and status, and time them.
type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "holdfast", Subsystem: "api", Name: "requests_total",
			Help: "HTTP requests by route (the mux pattern) and status code."}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "holdfast", Subsystem: "api", Name: "request_duration_seconds",
			Help: "HTTP request latency by route.", Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}}, []string{"route"}),
	}
	reg.MustRegister(m.requests, m.duration)
	return m
}

// statusWriter remembers the status and size of a response.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += n
	return n, err
}

// Unwrap lets http.ResponseController reach Flush and deadlines (the
// dashboard's event stream).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// instrument wraps the whole mux: metrics by route and, if access is set,
// one structured log line per request.
func instrument(next http.Handler, m *httpMetrics, access *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		route := r.Pattern // set by the mux on r
		if route == "" {
			route = "unmatched"
		}
		d := time.Since(start)
		m.requests.WithLabelValues(route, strconv.Itoa(sw.status)).Inc()
		m.duration.WithLabelValues(route).Observe(d.Seconds())
		if access != nil {
			access.LogAttrs(r.Context(), slog.LevelInfo, "request", slog.String("method", r.Method), slog.String("path", r.URL.Path),
				slog.String("route", route), slog.Int("status", sw.status), slog.Int("bytes", sw.bytes),
				slog.Duration("took", d), slog.String("remote", r.RemoteAddr))
		}
	})
}
