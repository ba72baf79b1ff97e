package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/holdfast/holdfast/internal/freeport"
	"github.com/holdfast/holdfast/internal/postgres"
)

// startPostgres initialises and starts a PostgreSQL server with holdfast's
// settings in dir/pg on a free loopback port, as the postgres OS user when
// run as root (the way internal/testutil does for tests). It returns a DSN
// for the superuser over TCP.
func startPostgres(ctx context.Context, dir string, log *slog.Logger) (string, *postgres.Instance, error) {
	addr, err := freeAddr()
	if err != nil {
		return "", nil, err
	}
	_, portS, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portS)
	base := filepath.Join(dir, "pg")
	if err := os.MkdirAll(base, 0o755); err != nil {
		return "", nil, err
	}
	const password = "bench-superuser"
	inst, err := postgres.New(postgres.Config{
		Name: "bench", DataDir: filepath.Join(base, "data"), ConfDir: filepath.Join(base, "conf"),
		ListenAddr: "127.0.0.1", Port: port,
		SuperUser: "postgres", SuperPassword: password, ReplUser: "replicator", ReplPassword: "bench-replication",
	}, log)
	if err != nil {
		return "", nil, err
	}
	if err := inst.InitDB(ctx); err != nil {
		return "", nil, err
	}
	if err := inst.WriteConfig(postgres.Settings{}); err != nil {
		return "", nil, err
	}
	if err := inst.Start(ctx); err != nil {
		return "", inst, err
	}
	u := url.URL{Scheme: "postgres", User: url.UserPassword("postgres", password), Host: addr, Path: "/postgres",
		RawQuery: "sslmode=disable&connect_timeout=10"}
	return u.String(), inst, nil
}

// postgresCPUSeconds adds up the CPU time (user and system) of the live
// postmaster and its children (the backends and auxiliary processes, each
// in a session of its own). Processes that exited are not counted: the
// connections of the committer and of the buffer live as long as the run.
func postgresCPUSeconds(postmaster int) float64 {
	if postmaster <= 0 {
		return 0
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	const clockTicks = 100 // USER_HZ on Linux
	var ticks uint64
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ... utime(14) stime(15): comm may hold
		// spaces, so split after its closing parenthesis.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 13 {
			continue
		}
		if ppid, _ := strconv.Atoi(f[1]); pid != postmaster && ppid != postmaster {
			continue
		}
		ut, _ := strconv.ParseUint(f[11], 10, 64)
		st, _ := strconv.ParseUint(f[12], 10, 64)
		ticks += ut + st
	}
	return float64(ticks) / clockTicks
}

func freeAddr() (string, error) {
	p, err := freeport.Pick()
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("127.0.0.1:%d", p), nil
}
