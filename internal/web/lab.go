// Package web is the lab's dashboard: the page (built from ui/ and embedded
// from dist/), its live feed of server-sent events, and the controls that
// start load, run drills and switch over. It runs in the api server of
// `holdfast up`.
//
// Everything under /lab/ needs the admin token: the URL `up` prints carries
// it once (/?token=...), and the server turns it into an HttpOnly,
// SameSite=Strict cookie, so a page elsewhere cannot drive the lab.
package web

import (
	"context"
	"crypto/subtle"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/holdfast/holdfast/internal/admin"
	"github.com/holdfast/holdfast/internal/buffer"
	"github.com/holdfast/holdfast/internal/config"
	"github.com/holdfast/holdfast/internal/drill"
	"github.com/holdfast/holdfast/internal/problem"
	"github.com/holdfast/holdfast/internal/proxy"
	"github.com/holdfast/holdfast/internal/store"
)

//go:embed dist
var dist embed.FS

// Config configures a Lab.
type Config struct {
	Store *store.Store
	// Deployment is the resolved deployment config.
	Deployment config.Config
	// AdminToken guards /lab/.
	AdminToken string
	// Buffer is the write buffer of this process (nil: none).
	Buffer *buffer.Service
	// History is how many seconds of traffic the charts keep (default 300).
	History int
	// Registerer receives the lab's metrics (nil: not exported).
	Registerer prometheus.Registerer
}

// Lab is the dashboard's server side.
type Lab struct {
	cfg     Config
	log     *slog.Logger
	runner  *drill.Runner
	series  *series
	hub     *hub
	metrics *metrics
	ports   map[string]string  // "port N" -> member
	admin   config.Credentials // reads record counts, empties the drill table

	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once

	mu      sync.Mutex
	load    *runningLoad // guarded by mu
	drill   DrillState   // guarded by mu
	fault   time.Time    // the running or last drill's fault; guarded by mu
	events  []Event      // oldest first; guarded by mu
	reports []drill.Report
	tick    Tick // the last one; guarded by mu
}

// LoadState is the dashboard's load.
type LoadState struct {
	Running      bool      `json:"running"`
	Path         string    `json:"path,omitempty"`
	Rate         float64   `json:"rate,omitempty"`
	AchievedRate float64   `json:"achieved_rate"`
	StartedAt    time.Time `json:"started_at,omitzero"`
}

// DrillState is the drill the dashboard runs, if any.
type DrillState struct {
	Running  bool   `json:"running"`
	Name     string `json:"name,omitempty"`
	Scenario string `json:"scenario,omitempty"`
	Path     string `json:"path,omitempty"`
	Phase    string `json:"phase,omitempty"`
}

// Event is a line of the dashboard's timeline: the cluster's events and
// the lab's own (load started, fault injected, drill done).
type Event struct {
	At           time.Time `json:"at"`
	Kind         string    `json:"kind"`
	Member       string    `json:"member,omitempty"`
	Message      string    `json:"message"`
	SinceFaultMS *int64    `json:"since_fault_ms,omitempty"`
}

// Member is a member as the dashboard shows it.
type Member struct {
	admin.MemberStatus
	// Records is the row count of drill_writes read from the member
	// itself; null when it did not answer.
	Records *int64 `json:"records"`
}

// ClusterView is the cluster status with record counts.
type ClusterView struct {
	Cluster    string   `json:"cluster"`
	Primary    string   `json:"primary"`
	Generation int64    `json:"generation"`
	Paused     bool     `json:"paused"`
	Members    []Member `json:"members"`
	// Regions is `holdfast region status`: role, lag and canary per region.
	Regions *admin.Regions `json:"regions,omitempty"`
	Error   string         `json:"error,omitempty"`
}

// BufferView is the buffer's backlog.
type BufferView struct {
	Pending int    `json:"pending"`
	Dead    uint64 `json:"dead"`
}

// Tick is what the feed sends every second.
type Tick struct {
	Now     time.Time     `json:"now"`
	Cluster ClusterView   `json:"cluster"`
	Proxy   *proxy.Status `json:"proxy"`
	// RegionProxies are the other regions' own proxies, by region.
	RegionProxies map[string]*proxy.Status `json:"region_proxies,omitempty"`
	Buffer        *BufferView              `json:"buffer"`
	Load          LoadState                `json:"load"`
	Drill         DrillState               `json:"drill"`
	Bucket        *Bucket                  `json:"bucket"`
}

// State is everything the page shows: GET /lab/state and the feed's first
// message.
type State struct {
	Tick
	ClusterName string         `json:"cluster_name"`
	Scenarios   []string       `json:"scenarios"`
	Paths       []string       `json:"paths"`
	Series      []Bucket       `json:"series"`
	Events      []Event        `json:"events"`
	Reports     []drill.Report `json:"reports"`
}

const (
	maxEvents  = 500
	maxReports = 100
	cookieName = "holdfast_lab"
)

// New creates the lab; Start runs its feed.
func New(cfg Config, log *slog.Logger) *Lab {
	if cfg.History <= 0 {
		cfg.History = 300
	}
	l := &Lab{cfg: cfg, log: log.With("component", "lab"), hub: newHub(), ports: drill.MemberNames(cfg.Deployment), metrics: newMetrics(cfg.Registerer)}
	l.series = newSeries(cfg.History, func(m string) string {
		if n, ok := l.ports[m]; ok {
			return n
		}
		return m
	})
	// The secrets exist before the lab starts (up creates them first).
	if cred, _, err := cfg.Deployment.LoadSecrets(); err == nil {
		l.admin = cred
	} else {
		l.log.Warn("dashboard: no admin credentials: record counts and reset will fail", "err", err)
	}
	l.runner = &drill.Runner{Store: cfg.Store, Cfg: cfg.Deployment, Log: log, AdminToken: cfg.AdminToken}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	return l
}

// Register adds the dashboard's routes.
func (l *Lab) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", l.index)
	mux.HandleFunc("GET /assets/{file}", l.asset)
	mux.HandleFunc("GET /lab/state", l.guard(l.getState))
	mux.HandleFunc("GET /lab/stream", l.guard(l.stream))
	mux.HandleFunc("POST /lab/load", l.guard(l.postLoad))
	mux.HandleFunc("DELETE /lab/load", l.guard(l.deleteLoad))
	mux.HandleFunc("POST /lab/drills", l.guard(l.postDrill))
	mux.HandleFunc("POST /lab/switchover", l.guard(l.postSwitchover))
	mux.HandleFunc("POST /lab/reset", l.guard(l.postReset))
}

// Start runs the feed: a tick every second and the cluster's events.
func (l *Lab) Start() {
	_, rev, err := l.cfg.Store.EventLog(l.ctx, 1)
	if err != nil {
		l.log.Warn("dashboard: read event log", "err", err)
	}
	l.wg.Add(2)
	go func() { defer l.wg.Done(); l.tickLoop() }()
	go func() { defer l.wg.Done(); l.watchEvents(rev) }()
}

// Close stops the load, the feed and the streams. A running drill is
// cancelled (it heals what it broke on the way out).
func (l *Lab) Close() {
	l.closeOnce.Do(func() {
		l.stopLoad()
		l.cancel()
		l.hub.closeAll()
		l.wg.Wait()
	})
}

// URL is the dashboard's address with the token that opens it.
func URL(apiAddr, token string) string {
	return "http://" + apiAddr + "/?token=" + url.QueryEscape(token)
}

func (l *Lab) authorized(r *http.Request) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		c, err := r.Cookie(cookieName)
		if err != nil {
			return false
		}
		tok = c.Value
	}
	return l.cfg.AdminToken != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(l.cfg.AdminToken)) == 1
}

func (l *Lab) guard(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !l.authorized(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="holdfast lab"`)
			problem.Write(w, http.StatusUnauthorized, "", "open the dashboard link printed by holdfast up (it carries the admin token), or send Authorization: Bearer <api.admin_token_file>")
			return
		}
		h(w, r)
	}
}

func (l *Lab) index(w http.ResponseWriter, r *http.Request) {
	if tok := r.URL.Query().Get("token"); tok != "" {
		if l.cfg.AdminToken == "" || subtle.ConstantTimeCompare([]byte(tok), []byte(l.cfg.AdminToken)) != 1 {
			problem.Write(w, http.StatusForbidden, "token", "wrong token: use the dashboard link printed by holdfast up")
			return
		}
		http.SetCookie(w, &http.Cookie{Name: cookieName, Value: tok, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	l.serveFile(w, r, "index.html")
}

func (l *Lab) asset(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	if name == "index.html" || strings.Contains(name, "/") {
		http.NotFound(w, r)
		return
	}
	l.serveFile(w, r, name)
}

func (l *Lab) serveFile(w http.ResponseWriter, r *http.Request, name string) {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if _, err := fs.Stat(sub, name); err != nil {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	http.ServeFileFS(w, r, sub, name)
}

func (l *Lab) state() State {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := State{Tick: l.tick, ClusterName: l.cfg.Deployment.Cluster, Scenarios: drill.Scenarios, Paths: drill.Paths,
		Series: l.series.buckets(), Events: slices.Clone(l.events), Reports: slices.Clone(l.reports)}
	st.Load, st.Drill = l.loadStateLocked(), l.drill
	if st.Events == nil {
		st.Events = []Event{}
	}
	if st.Reports == nil {
		st.Reports = []drill.Report{}
	}
	return st
}

func (l *Lab) getState(w http.ResponseWriter, _ *http.Request) {
	problem.WriteJSON(w, http.StatusOK, l.state())
}

// stream is the live feed: `state` first, then `tick`, `event` and
// `report` as they happen. A client too slow to keep up is dropped and
// reconnects (EventSource does) to a fresh `state`.
func (l *Lab) stream(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	// The server's read timeout would end the stream.
	_ = rc.SetReadDeadline(time.Time{})
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	ch := l.hub.subscribe()
	defer l.hub.unsubscribe(ch)
	first, err := sseMessage("state", l.state())
	if err != nil {
		return
	}
	if _, err := w.Write(first); err != nil || rc.Flush() != nil {
		return
	}
	for {
		select {
		case msg, ok := <-ch:
			if !ok {
				return
			}
			if _, err := w.Write(msg); err != nil || rc.Flush() != nil {
				return
			}
		case <-r.Context().Done():
			return
		}
	}
}

func (l *Lab) addEvent(e Event) {
	l.mu.Lock()
	if !l.fault.IsZero() && !e.At.Before(l.fault) && e.At.Sub(l.fault) < 2*time.Minute {
		ms := e.At.Sub(l.fault).Milliseconds()
		e.SinceFaultMS = &ms
	}
	l.events = append(l.events, e)
	if n := len(l.events) - maxEvents; n > 0 {
		l.events = slices.Delete(l.events, 0, n)
	}
	l.mu.Unlock()
	l.hub.broadcast("event", e)
}

func (l *Lab) labEvent(kind, member, format string, args ...any) {
	l.addEvent(Event{At: time.Now(), Kind: kind, Member: member, Message: fmt.Sprintf(format, args...)})
}

func (l *Lab) watchEvents(rev int64) {
	for e := range l.cfg.Store.WatchEvents(l.ctx, rev) {
		msg := e.Message
		if msg == "" {
			msg = strings.TrimSpace(e.Kind + " " + e.Member)
		}
		l.addEvent(Event{At: e.Time, Kind: e.Kind, Member: e.Member, Message: msg})
	}
}
