package procs

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestDecide(t *testing.T) {
	g := &Governor{Up: 0.4, Down: 0.2, DownAfter: 3}
	used := []float64{0.1, 0.39, 0.5, 0.3, 0.1, 0.1, 0.25, 0.1, 0.1, 0.1, 0.05, 0.45}
	want := []int{1, 1, 4, 4, 4, 4, 4, 4, 4, 1, 1, 4}
	procs, calm := 1, 0
	var got []int
	for _, u := range used {
		procs = g.decide(procs, 4, u, &calm)
		got = append(got, procs)
	}
	if !slices.Equal(got, want) {
		t.Errorf("procs after each interval %v, want %v (a busy interval resets the quiet count)", got, want)
	}
}

// TestRunSizesGOMAXPROCS drives Run with a CPU clock (the one thing a test
// cannot produce for real on demand): it starts on one P, moves to Max when
// the process is busy, back after DownAfter quiet intervals, and leaves Max
// behind when it stops. With Max 0 it asks for the runtime's default (0)
// instead of a number, so Go keeps following the cgroup's CPU limit.
func TestRunSizesGOMAXPROCS(t *testing.T) {
	// Run does nothing on one CPU; two Ps make the test the same anywhere.
	runtime.GOMAXPROCS(2)
	defer runtime.SetDefaultGOMAXPROCS()
	for _, max := range []int{3, 0} {
		t.Run(fmt.Sprintf("max=%d", max), func(t *testing.T) { testRunSizes(t, max) })
	}
}

func testRunSizes(t *testing.T, max int) {
	var mu sync.Mutex
	var sets []int
	changed := make(chan int, 16)
	var cpu time.Duration
	busy := true
	g := &Governor{
		Max: max, Interval: time.Millisecond, Up: 0.4, Down: 0.2, DownAfter: 2,
		CPUTime: func() time.Duration {
			mu.Lock()
			defer mu.Unlock()
			if busy {
				cpu += time.Second // far more than one core over any interval
			}
			return cpu
		},
		SetProcs: func(n int) int {
			mu.Lock()
			sets = append(sets, n)
			mu.Unlock()
			changed <- n
			return 3
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { g.Run(ctx); close(done) }()
	wait := func(want int) {
		t.Helper()
		select {
		case n := <-changed:
			if n != want {
				t.Fatalf("GOMAXPROCS set to %d, want %d", n, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("GOMAXPROCS never set to %d", want)
		}
	}
	wait(1)   // at start
	wait(max) // busy
	mu.Lock()
	busy = false
	mu.Unlock()
	wait(1) // quiet
	cancel()
	<-done
	wait(max) // restored
	mu.Lock()
	defer mu.Unlock()
	if want := []int{1, max, 1, max}; !slices.Equal(sets, want) {
		t.Errorf("GOMAXPROCS set to %v, want %v", sets, want)
	}
}

// TestSetProcsDefault: setProcs(0) gives the runtime's own choice back
// after a fixed number.
func TestSetProcsDefault(t *testing.T) {
	runtime.SetDefaultGOMAXPROCS()
	def := runtime.GOMAXPROCS(0)
	if got := setProcs(def + 1); got != def+1 || runtime.GOMAXPROCS(0) != def+1 {
		t.Fatalf("setProcs(%d) = %d, GOMAXPROCS %d", def+1, got, runtime.GOMAXPROCS(0))
	}
	if got := setProcs(0); got != def || runtime.GOMAXPROCS(0) != def {
		t.Errorf("setProcs(0) = %d, GOMAXPROCS %d; want the default %d", got, runtime.GOMAXPROCS(0), def)
	}
}
