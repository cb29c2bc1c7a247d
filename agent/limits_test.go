package main

import (
	"context"
	"log/slog"
	"math"
	"runtime"
	"runtime/debug"
	"testing"
	"time"

	"github.com/sluiceio/sluice/agent/config"
)

// TestLimiterAppliesChangedLimits: limits from a config applied after start
// take effect without a restart, and going from procs N back to 0 starts
// the Governor again (one P while idle), which hands GOMAXPROCS back to the
// runtime's default when it stops.
func TestLimiterAppliesChangedLimits(t *testing.T) {
	t.Setenv("GOMAXPROCS", "")
	t.Setenv("GOMEMLIMIT", "")
	defer debug.SetMemoryLimit(math.MaxInt64)
	runtime.GOMAXPROCS(2) // the Governor only acts with more than one P
	defer runtime.SetDefaultGOMAXPROCS()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l := &limiter{ctx: ctx, log: slog.New(slog.DiscardHandler)}

	l.apply(config.Limits{Memory: 64 << 20, Procs: 3})
	if got := runtime.GOMAXPROCS(0); got != 3 {
		t.Errorf("procs 3: GOMAXPROCS %d", got)
	}
	if got := debug.SetMemoryLimit(-1); got != 64<<20 {
		t.Errorf("memory 64MiB: limit %d", got)
	}

	l.apply(config.Limits{Memory: 32 << 20})
	if got := debug.SetMemoryLimit(-1); got != 32<<20 {
		t.Errorf("memory 32MiB: limit %d", got)
	}
	// The Governor sets one P as it starts, on its own goroutine.
	deadline := time.Now().Add(10 * time.Second)
	for runtime.GOMAXPROCS(0) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("procs 0: GOMAXPROCS still %d, want the Governor's 1 while idle", runtime.GOMAXPROCS(0))
		}
		time.Sleep(time.Millisecond)
	}

	// A change of memory alone leaves the Governor running as it was.
	l.apply(config.Limits{Memory: 48 << 20})
	if got := debug.SetMemoryLimit(-1); got != 48<<20 {
		t.Errorf("memory 48MiB: limit %d", got)
	}
	if l.governors != 1 || l.stop == nil {
		t.Errorf("after a change of memory alone: %d Governors started, running %v; want 1, still running", l.governors, l.stop != nil)
	}

	l.apply(config.Limits{Memory: 32 << 20, Procs: 2})
	if got := runtime.GOMAXPROCS(0); got != 2 {
		t.Errorf("procs 2 after the Governor: GOMAXPROCS %d", got)
	}
	if l.stop != nil {
		t.Error("a fixed procs left the Governor running")
	}
}

// TestEnvProcs: only a value the runtime takes (a positive number) makes
// the agent leave GOMAXPROCS alone.
func TestEnvProcs(t *testing.T) {
	for v, want := range map[string]bool{"": false, "0": false, "-1": false, "x": false, "4294967297": false, "1": true, "4": true} {
		t.Setenv("GOMAXPROCS", v)
		if got := envProcs(); got != want {
			t.Errorf("GOMAXPROCS=%q: envProcs %v, want %v", v, got, want)
		}
	}
}
