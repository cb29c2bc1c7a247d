package main

import (
	"fmt"
	"log"
	"time"

	"github.com/sluiceio/sluice/internal/benchutil"
)

// clock is the shared /proc reader of internal/benchutil.
type clock struct{ benchutil.Clock }

func newClock(logger *log.Logger) clock { return clock{benchutil.NewClock(logger.Printf)} }

// cpu returns the user+system CPU time process pid has used so far.
func (c clock) cpu(pid int) (time.Duration, error) { return c.CPU(pid) }

// memMiB returns a memory field of /proc/<pid>/status ("VmRSS", "VmHWM")
// in MiB.
func memMiB(pid int, field string) (float64, error) {
	kb, err := benchutil.ProcNumber(pid, "status", field)
	return kb / 1024, err
}

// machine returns the time all CPUs spent busy and stolen.
func (c clock) machine() (busy, steal time.Duration, err error) { return c.Machine() }

// cpuMeter samples the CPU time of a set of processes, and of the whole
// machine, at once.
type cpuMeter struct {
	clk  clock
	pids map[string]int
}

// sample is the CPU time of each process of a meter, and the machine's busy
// and stolen time, at one moment.
type sample struct {
	at          time.Time
	cpu         map[string]time.Duration
	busy, steal time.Duration
}

func (m cpuMeter) sample() (sample, error) {
	s := sample{at: time.Now(), cpu: make(map[string]time.Duration, len(m.pids))}
	for name, pid := range m.pids {
		d, err := m.clk.cpu(pid)
		if err != nil {
			return s, fmt.Errorf("%s: %w", name, err)
		}
		s.cpu[name] = d
	}
	var err error
	s.busy, s.steal, err = m.clk.machine()
	return s, err
}

// since returns the CPU time name used between s0 and s.
func (s sample) since(s0 sample, name string) time.Duration {
	return s.cpu[name] - s0.cpu[name]
}

// cores returns the average number of cores name used between s0 and s.
func (s sample) cores(s0 sample, name string) float64 {
	return s.perWall(s0, s.since(s0, name))
}

// others returns the average number of cores that processes the meter
// does not track used between s0 and s, less untracked, the CPU time of
// processes of ours that ran only in between. A figure well above 0 means
// something else shared the machine during the measurement.
func (s sample) others(s0 sample, untracked time.Duration) float64 {
	d := s.busy - s0.busy - untracked
	for name := range s.cpu {
		d -= s.since(s0, name)
	}
	return s.perWall(s0, d)
}

// stolen returns the average number of cores the hypervisor took away
// between s0 and s.
func (s sample) stolen(s0 sample) float64 { return s.perWall(s0, s.steal-s0.steal) }

func (s sample) perWall(s0 sample, d time.Duration) float64 {
	wall := s.at.Sub(s0.at)
	if wall <= 0 {
		return 0
	}
	return d.Seconds() / wall.Seconds()
}
