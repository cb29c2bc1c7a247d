// Package procs sizes the Go scheduler to the agent's load: one P while the
// agent is lightly loaded, every CPU Go would use when it is busy.
//
// Most of a lightly loaded agent's CPU is goroutines handing messages to
// each other (paho's reader, router and handler, the pipeline, the
// forwarder). With a second P idle, each hand-off wakes it: a spinning
// thread, a futex, a second core's caches. Measured (W1 at 5,000 msg/s, one
// run of go run ./tools/bench --only 5k,20k,max with GOMAXPROCS=1 against
// the default 2 on this 2-core machine): 10.6 instead of 16.6 µs of CPU per
// message at 5k, the same at 20k and the same 150,000 msg/s maximum; with
// the 5 ms ACK of mqtt.max_ack_delay, 13.4 instead of 23.8. A busy agent
// (QoS 1 at full speed, 0.5 cores) did ~15% more messages per second with
// two Ps: fsyncs and reads overlap. So the Governor starts on one P, moves
// to all of them when the agent uses more than Up cores over an Interval,
// and back after DownAfter Intervals below Down.
//
// Going busy and stopping hand GOMAXPROCS back to the runtime with
// runtime.SetDefaultGOMAXPROCS rather than setting a number: a fixed number
// would switch off Go's own tracking of the cgroup's CPU limit (Go 1.25+),
// which a container's limit changed at run time relies on.
package procs

import (
	"context"
	"log/slog"
	"runtime"
	"time"
)

// Governor switches GOMAXPROCS between 1 and Max by the process's CPU use.
type Governor struct {
	Max       int           // Ps while busy; 0: the runtime's default (CPUs or cgroup limit)
	Interval  time.Duration // between samples of the CPU time
	Up        float64       // cores used over one Interval that bring Max
	Down      float64       // cores used below which...
	DownAfter int           // ...for this many Intervals in a row bring 1 back

	// CPUTime and SetProcs default to the process's rusage and
	// runtime.GOMAXPROCS (SetProcs(0) meaning the runtime's default);
	// tests replace them.
	CPUTime  func() time.Duration
	SetProcs func(int) int
	Log      *slog.Logger
}

// setProcs sets GOMAXPROCS to n, or back to the runtime's default when n is
// 0, and returns the value now in force.
func setProcs(n int) int {
	if n == 0 {
		runtime.SetDefaultGOMAXPROCS()
		return runtime.GOMAXPROCS(0)
	}
	runtime.GOMAXPROCS(n)
	return n
}

// New returns a Governor with the measured defaults.
func New(log *slog.Logger) *Governor {
	return &Governor{Interval: time.Second, Up: 0.4, Down: 0.2, DownAfter: 5, Log: log}
}

// Run governs until ctx ends and leaves GOMAXPROCS at Max (or the
// runtime's default). It only waits for ctx's end when there is one CPU, or
// when the platform gives no CPU time to go by.
func (g *Governor) Run(ctx context.Context) {
	set, cpu := g.SetProcs, g.CPUTime
	if set == nil {
		set = setProcs
	}
	if cpu == nil && haveProcessCPU {
		cpu = processCPU
	}
	// busy is Max, or the default's value now; set(g.Max) keeps following
	// the default when Max is 0.
	busy := g.Max
	if busy == 0 {
		busy = runtime.GOMAXPROCS(0)
	}
	if busy <= 1 || cpu == nil {
		<-ctx.Done()
		return
	}
	procs, calm := 1, 0
	set(procs)
	defer set(g.Max)
	t := time.NewTicker(g.Interval)
	defer t.Stop()
	last, lastAt := cpu(), time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			c := cpu()
			used := float64(c-last) / float64(now.Sub(lastAt))
			last, lastAt = c, now
			next := g.decide(procs, busy, used, &calm)
			if next != procs {
				if next == 1 {
					set(1)
				} else if n := set(g.Max); n > 1 {
					next = n // the default may have moved with the cgroup
				}
				if g.Log != nil {
					g.Log.Debug("scheduler resized", "procs", next, "cores_used", used)
				}
				procs = next
			}
		}
	}
}

// decide returns the Ps for the next interval after one in which the
// process used used cores on procs Ps; calm counts the quiet intervals.
func (g *Governor) decide(procs, busy int, used float64, calm *int) int {
	switch {
	case procs == 1 && used > g.Up:
		*calm = 0
		return busy
	case procs > 1 && used < g.Down:
		*calm++
		if *calm >= g.DownAfter {
			*calm = 0
			return 1
		}
	default:
		*calm = 0
	}
	return procs
}
