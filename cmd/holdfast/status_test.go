package main

import (
	"bytes"
	"regexp"
	"testing"

	"github.com/holdfast/holdfast/internal/admin"
	"github.com/holdfast/holdfast/internal/proxy"
)

func TestPrintStatus(t *testing.T) {
	lag := int64(1500)
	zero, hb := int64(0), int64(42)
	var b bytes.Buffer
	printStatus(&b, admin.ClusterStatus{Cluster: "demo", Primary: "a", Generation: 2, SyncMode: "quorum",
		Members: []admin.MemberStatus{
			{Name: "a", Role: "primary", State: "running", Host: "h", Port: 1, PID: 10},
			{Name: "b", Role: "replica", State: "running", Host: "h", Port: 2, ReplayLag: &lag, HeartbeatLag: &hb},
			{Name: "c", Role: "replica", State: "running", Host: "h", Port: 3, ReplayLag: &zero, PromoteFailed: true},
		}})
	for _, re := range []string{
		`MEMBER +REGION .* LAG +LAG TIME +REPLAY LAG +SYNC +PID`,
		`(?m)^a .* 0 +- +- +10$`,
		`(?m)^b .* 0 +42ms +1\.5s +- *$`,
		`(?m)^c .* 0 +- +0s +- *$`,
		`(?m)^c: its promotion failed 3 times in a row: it stands in no election`,
	} {
		if !regexp.MustCompile(re).Match(b.Bytes()) {
			t.Errorf("status output does not match %q:\n%s", re, b.String())
		}
	}
}

func TestPrintProxyStatusParked(t *testing.T) {
	var b bytes.Buffer
	printProxyStatus(&b, proxy.Status{State: "serving", Clients: map[string]int64{"writer": 5, "reader": 1},
		Parked: map[string]int64{"writer": 4}, PoolMode: "session", PoolSize: 20, HoldWindow: "30s"})
	if want := "Clients: writer 5 (4 parked), reader 1 "; !bytes.Contains(b.Bytes(), []byte(want)) {
		t.Errorf("proxy status output lacks %q:\n%s", want, b.String())
	}
}
