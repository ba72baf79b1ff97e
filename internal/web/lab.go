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
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
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

// ------------------------------------------------------------------ load

type runningLoad struct {
	path    string
	rate    float64
	started time.Time
	cancel  context.CancelFunc
	done    chan struct{}

	mu     sync.Mutex
	count  int64
	window []int64 // count at each of the last ticks
}

func (rl *runningLoad) observe() {
	rl.mu.Lock()
	rl.count++
	rl.mu.Unlock()
}

// achieved is the completion rate over the last five seconds.
func (rl *runningLoad) achieved() float64 {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	if len(rl.window) < 2 {
		return 0
	}
	return float64(rl.window[len(rl.window)-1]-rl.window[0]) / float64(len(rl.window)-1)
}

func (rl *runningLoad) sample() {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	rl.window = append(rl.window, rl.count)
	if len(rl.window) > 6 {
		rl.window = rl.window[1:]
	}
}

func (l *Lab) loadStateLocked() LoadState {
	if l.load == nil {
		return LoadState{}
	}
	return LoadState{Running: true, Path: l.load.path, Rate: l.load.rate, AchievedRate: l.load.achieved(), StartedAt: l.load.started}
}

type loadRequest struct {
	Path string  `json:"path"`
	Rate float64 `json:"rate"`
}

func (l *Lab) postLoad(w http.ResponseWriter, r *http.Request) {
	var req loadRequest
	if p := problem.DecodeJSON(w, r, 4096, &req); p != nil {
		problem.Write(w, p.Status, p.Field, p.Detail)
		return
	}
	if !slices.Contains(drill.Paths, req.Path) {
		problem.Write(w, http.StatusBadRequest, "path", fmt.Sprintf("unknown path %q (paths: %s)", req.Path, strings.Join(drill.Paths, ", ")))
		return
	}
	if req.Rate == 0 {
		req.Rate = 200
	}
	if req.Rate < 1 || req.Rate > 100000 {
		problem.Write(w, http.StatusBadRequest, "rate", fmt.Sprintf("rate %v must be between 1 and 100000 writes/s", req.Rate))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	if err := l.runner.Prepare(ctx); err != nil {
		problem.Write(w, http.StatusServiceUnavailable, "", "cannot prepare the drill table: "+err.Error())
		return
	}
	writer, err := l.runner.NewWriter(req.Path)
	if err != nil {
		problem.Write(w, http.StatusBadRequest, "path", err.Error())
		return
	}
	l.stopLoad()
	lctx, stop := context.WithCancel(l.ctx)
	rl := &runningLoad{path: req.Path, rate: req.Rate, started: time.Now(), cancel: stop, done: make(chan struct{})}
	load := &drill.Load{Drill: fmt.Sprintf("lab-load-%d", time.Now().UnixMilli()), Writer: writer, Rate: req.Rate,
		Concurrency: max(8, int(req.Rate/20)), Timeout: 30 * time.Second, Discard: true,
		Observe: func(rec drill.Record) { l.series.add(rec); l.metrics.write(req.Path, rec); rl.observe() }}
	go func() {
		defer close(rl.done)
		defer writer.Close()
		load.Run(lctx)
	}()
	l.mu.Lock()
	l.load = rl
	st := l.loadStateLocked()
	l.mu.Unlock()
	l.labEvent("load-started", "", "load started: %.0f writes/s on path %s", req.Rate, req.Path)
	problem.WriteJSON(w, http.StatusOK, st)
}

func (l *Lab) deleteLoad(w http.ResponseWriter, _ *http.Request) {
	if l.stopLoad() {
		l.labEvent("load-stopped", "", "load stopped")
	}
	l.mu.Lock()
	st := l.loadStateLocked()
	l.mu.Unlock()
	problem.WriteJSON(w, http.StatusOK, st)
}

// stopLoad stops the load and waits for its writes in flight; false if
// none ran.
func (l *Lab) stopLoad() bool {
	l.mu.Lock()
	rl := l.load
	l.load = nil
	l.mu.Unlock()
	if rl == nil {
		return false
	}
	rl.cancel()
	<-rl.done
	return true
}

// ----------------------------------------------------------------- drills

type drillRequest struct {
	Scenario string  `json:"scenario"`
	Path     string  `json:"path"`
	Rate     float64 `json:"rate"`
	Duration string  `json:"duration"`
	Pause    string  `json:"pause"`
}

func (l *Lab) postDrill(w http.ResponseWriter, r *http.Request) {
	var req drillRequest
	if p := problem.DecodeJSON(w, r, 4096, &req); p != nil {
		problem.Write(w, p.Status, p.Field, p.Detail)
		return
	}
	rc := drill.RunConfig{Scenario: req.Scenario, Path: req.Path, Rate: req.Rate, Duration: 15 * time.Second, PauseFor: 5 * time.Second}
	if rc.Rate == 0 {
		rc.Rate = 200
	}
	for field, v := range map[string]*time.Duration{"duration": &rc.Duration, "pause": &rc.PauseFor} {
		raw := map[string]string{"duration": req.Duration, "pause": req.Pause}[field]
		if raw == "" {
			continue
		}
		d, err := time.ParseDuration(raw)
		if err != nil || d <= 0 || d > time.Hour {
			problem.Write(w, http.StatusBadRequest, field, fmt.Sprintf("%q is not a duration between 1ms and 1h (examples: 15s, 1m)", raw))
			return
		}
		*v = d
	}
	if err := rc.Validate(); err != nil {
		field := "duration"
		switch {
		case !slices.Contains(drill.Scenarios, rc.Scenario):
			field = "scenario"
		case !slices.Contains(drill.Paths, rc.Path):
			field = "path"
		case rc.Rate < 1 || rc.Rate > 100000:
			field = "rate"
		}
		problem.Write(w, http.StatusBadRequest, field, err.Error())
		return
	}
	l.mu.Lock()
	if l.drill.Running {
		running := l.drill.Name
		l.mu.Unlock()
		problem.Write(w, http.StatusConflict, "", fmt.Sprintf("drill %s is running; wait for its report", running))
		return
	}
	name := fmt.Sprintf("%s-%s", rc.Scenario, rc.Path)
	l.drill = DrillState{Running: true, Name: name, Scenario: rc.Scenario, Path: rc.Path, Phase: "checking the cluster"}
	l.mu.Unlock()
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	err := l.runner.CheckHealthy(ctx)
	cancel()
	if err != nil {
		l.mu.Lock()
		l.drill = DrillState{}
		l.mu.Unlock()
		problem.Write(w, http.StatusServiceUnavailable, "", err.Error()+"; wait until status shows a primary and a synchronous replica")
		return
	}
	rc.Observe = func(rec drill.Record) { l.series.add(rec); l.metrics.write(rc.Path, rec) }
	rc.Phase = func(phase, what string, at time.Time) {
		l.mu.Lock()
		l.drill.Phase = phase
		if phase == "fault" {
			l.fault = at
		}
		l.mu.Unlock()
		if phase == "fault" {
			l.addEvent(Event{At: at, Kind: "fault", Message: "fault injected: " + what})
		}
	}
	l.labEvent("drill-started", "", "drill started: %s on path %s, %.0f writes/s for %s", rc.Scenario, rc.Path, rc.Rate, rc.Duration)
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		rep, err := l.runner.Run(l.ctx, rc)
		l.mu.Lock()
		l.drill = DrillState{}
		if err == nil {
			l.reports = append(l.reports, rep)
			if n := len(l.reports) - maxReports; n > 0 {
				l.reports = slices.Delete(l.reports, 0, n)
			}
		}
		l.mu.Unlock()
		if err != nil {
			l.metrics.drills.WithLabelValues(rc.Scenario, rc.Path, "failed").Inc()
			l.labEvent("drill-failed", "", "drill %s on %s failed: %v", rc.Scenario, rc.Path, err)
			return
		}
		l.metrics.drills.WithLabelValues(rc.Scenario, rc.Path, "done").Inc()
		l.metrics.lost.WithLabelValues(rc.Scenario, rc.Path).Add(float64(rep.LostAcked))
		l.labEvent("drill-done", "", "drill %s on %s: %d ok, %d errors, %d unknown, %d lost, %d duplicates, downtime %d ms",
			rep.Scenario, rep.Path, rep.OK, rep.Errors, rep.Unknown, rep.LostAcked, rep.Duplicates, rep.DowntimeMS)
		l.hub.broadcast("report", rep)
	}()
	problem.WriteJSON(w, http.StatusAccepted, map[string]string{"name": name})
}

func (l *Lab) postSwitchover(w http.ResponseWriter, _ *http.Request) {
	l.mu.Lock()
	busy := l.drill.Running
	l.mu.Unlock()
	if busy {
		problem.Write(w, http.StatusConflict, "", "a drill is running; switch over when it is done")
		return
	}
	l.labEvent("switchover", "", "switchover requested from the dashboard")
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		ctx, cancel := context.WithTimeout(l.ctx, 2*time.Minute)
		defer cancel()
		res, err := admin.Switchover(ctx, l.cfg.Store, l.cfg.Deployment, "", func(string) {})
		if err != nil {
			l.labEvent("switchover-failed", "", "switchover failed: %v", err)
			return
		}
		l.labEvent("switchover", res.To, "switchover done: %s -> %s in %d ms", res.From, res.To, res.Took.Milliseconds())
	}()
	problem.WriteJSON(w, http.StatusAccepted, map[string]string{"status": "switchover started"})
}

func (l *Lab) postReset(w http.ResponseWriter, r *http.Request) {
	l.mu.Lock()
	busy := l.drill.Running
	l.mu.Unlock()
	if busy {
		problem.Write(w, http.StatusConflict, "", "a drill is running; reset when it is done")
		return
	}
	l.stopLoad()
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	if err := l.truncate(ctx); err != nil {
		problem.Write(w, http.StatusServiceUnavailable, "", "could not empty drill_writes: "+err.Error())
		return
	}
	l.series.reset()
	l.mu.Lock()
	l.events, l.reports, l.fault = nil, nil, time.Time{}
	l.mu.Unlock()
	problem.WriteJSON(w, http.StatusOK, map[string]bool{"reset": true})
	l.hub.broadcast("state", l.state())
}

// truncate empties the drills' table on the primary.
func (l *Lab) truncate(ctx context.Context) error {
	st, err := admin.Status(ctx, l.cfg.Store, l.cfg.Deployment)
	if err != nil {
		return err
	}
	m, ok := st.PrimaryMember()
	if !ok {
		return errors.New("no primary")
	}
	conn, err := pgx.Connect(ctx, l.memberDSN(m))
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, "TRUNCATE drill_writes")
	if isUndefinedTable(err) {
		return nil
	}
	return err
}
