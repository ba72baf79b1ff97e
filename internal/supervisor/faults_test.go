package supervisor_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast/internal/admin"
	"github.com/holdfast/holdfast/internal/buffer"
	"github.com/holdfast/holdfast/internal/cluster"
	"github.com/holdfast/holdfast/internal/drill"
	"github.com/holdfast/holdfast/internal/proc"
)

// TestFaultsBackToBack: faults as real outages bring them, one every 4 s
// whatever state the cluster is in: kill -9 of the primary's postmaster,
// kill -9 of its agent and postmaster, and SIGSTOP of its agent and of its
// postmaster alone (backends and walsenders keep running) for 6 s. Under
// writes direct to the primary, through the proxy and through the buffer
// (two regions: its acknowledgements wait for the standby region), nothing
// acknowledged may be lost or applied twice, and the buffer's counters must
// agree with the rows: accepted = committed = rows once drained.
func TestFaultsBackToBack(t *testing.T) {
	h, ctx, _, r := regionLab(t, 3*time.Second)
	w := h.startWriter()
	lctx, stopLoads := context.WithCancel(ctx)
	defer stopLoads()
	loads := []*pathLoad{startLoad(t, lctx, r, "proxy", "back-to-back", 100), startLoad(t, lctx, r, "buffer", "back-to-back", 300)}
	waitRecords(ctx, t, loads, 50)

	var resumes sync.WaitGroup
	defer resumes.Wait()
	kinds := []string{proc.FaultKillPostmaster, proc.FaultKillNode, proc.FaultPause, proc.FaultKillPostmaster, proc.FaultPause, proc.FaultKillNode}
	for i, kind := range kinds {
		p, ok := runningPrimary(ctx, h, 2*time.Minute)
		if !ok {
			t.Fatalf("fault %d: no primary within 2 minutes", i+1)
		}
		t.Logf("fault %d: %s of %s (timeline %d)", i+1, kind, p.Name, p.Timeline)
		resumed, err := proc.MemberFault(kind, p.AgentPID, p.PID, 6*time.Second)
		if err != nil {
			t.Logf("fault %d: %v", i+1, err)
		}
		resumes.Add(1)
		go func() { defer resumes.Done(); <-resumed }()
		// The schedule, not a wait for anything: the next fault comes 4 s
		// later whatever the cluster has done meanwhile.
		time.Sleep(4 * time.Second)
	}
	resumes.Wait()
	if err := r.WaitHealthy(ctx, 3*time.Minute); err != nil {
		t.Fatal(err)
	}
	waitRecords(ctx, t, loads, 50)
	stopLoads()

	var after buffer.Status
	deadline := time.Now().Add(3 * time.Minute)
	for {
		after = bufferStatus(ctx, t, r)
		if after.Drained {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the buffer did not drain: %+v", after)
		}
		time.Sleep(200 * time.Millisecond)
	}

	p := h.primary()
	conn, err := pgx.Connect(ctx, h.dsn(p))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for _, pl := range loads {
		rep := pl.reconcile(ctx, t, conn)
		if rep.LostAcked != 0 || rep.Duplicates != 0 {
			t.Errorf("%s: %d acknowledged writes lost, %d applied twice", pl.path, rep.LostAcked, rep.Duplicates)
		}
		if pl.path != "buffer" {
			continue
		}
		stored, err := drill.Stored(ctx, conn, pl.load.Drill)
		if err != nil {
			t.Fatal(err)
		}
		rows := 0
		for _, n := range stored {
			rows += n
		}
		// Nothing else writes through this cluster's buffer: since it
		// started, every accepted write is this load's.
		t.Logf("buffer: %d accepted, %d committed, %d rows; %d batches applied again after a primary change",
			after.Accepted, after.Committed, rows, after.Redelivered)
		if after.Accepted != after.Committed || uint64(rows) != after.Accepted || after.Accepted < uint64(rep.OK) {
			t.Errorf("buffer counters disagree: %d accepted, %d committed, %d rows (%d acknowledged to the load, %d unknown)",
				after.Accepted, after.Committed, rows, rep.OK, rep.Unknown)
		}
	}
	h.finish(w, p)
}

// runningPrimary waits for a running primary with known processes.
func runningPrimary(ctx context.Context, h *harness, timeout time.Duration) (admin.MemberStatus, bool) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		st, err := admin.Status(sctx, h.sup.Store(), h.cfg)
		cancel()
		if err == nil {
			if p, ok := st.PrimaryMember(); ok && p.State == cluster.StateRunning && p.PID > 0 && p.AgentPID > 0 {
				return p, true
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return admin.MemberStatus{}, false
}

func bufferStatus(ctx context.Context, t *testing.T, r *drill.Runner) buffer.Status {
	t.Helper()
	var st buffer.Status
	deadline := time.Now().Add(30 * time.Second)
	for {
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+r.Cfg.API.Addr+"/v1/buffer/status", nil)
		req.Header.Set("Authorization", "Bearer "+r.AdminToken)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
			if err == nil && resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("HTTP %d", resp.StatusCode)
			}
			if err == nil {
				return st
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("buffer status: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
