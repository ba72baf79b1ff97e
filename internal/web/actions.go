package web

// What the lab does when asked: generate load, run a drill, switch over,
// reset its tables.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast/internal/admin"
	"github.com/holdfast/holdfast/internal/drill"
	"github.com/holdfast/holdfast/internal/problem"
)

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
