package main

import (
	"bufio"
	"bytes"
	"fmt"
	"log"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// clock converts the clock ticks of /proc/<pid>/stat to time.
type clock struct {
	hz int64 // ticks per second
}

// newClock asks getconf for CLK_TCK once; Linux uses 100 almost everywhere,
// which is the fallback.
func newClock(logger *log.Logger) clock {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if hz, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64); err == nil && hz > 0 {
			return clock{hz: hz}
		}
	}
	logger.Printf("getconf CLK_TCK failed (%v); assuming 100 Hz", err)
	return clock{hz: 100}
}

// cpu returns the user+system CPU time process pid has used so far, all its
// threads included.
func (c clock) cpu(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("cpu time of pid %d: %w", pid, err)
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// fields are counted after its closing parenthesis, where field 3
	// (state) is index 0, so utime (14) is 11 and stime (15) is 12.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("cpu time of pid %d: no ')' in /proc/%d/stat", pid, pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("cpu time of pid %d: %d fields in /proc/%d/stat", pid, len(f), pid)
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("cpu time of pid %d: %w", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks * int64(time.Second) / c.hz), nil
}

// memMiB returns a memory field of /proc/<pid>/status ("VmRSS", "VmHWM")
// in MiB.
func memMiB(pid int, field string) (float64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("%s of pid %d: %w", field, pid, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || name != field {
			continue
		}
		kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
		if err != nil {
			return 0, fmt.Errorf("%s of pid %d: %w", field, pid, err)
		}
		return kb / 1024, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("%s of pid %d: %w", field, pid, err)
	}
	return 0, fmt.Errorf("%s of pid %d: not in /proc/%d/status", field, pid, pid)
}

// machine returns the time all CPUs spent busy (user, nice, system, irq,
// softirq) and stolen by the hypervisor, from /proc/stat.
func (c clock) machine() (busy, steal time.Duration, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, fmt.Errorf("machine cpu time: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("machine cpu time: unexpected /proc/stat line %q", line)
	}
	var t [8]int64 // user nice system idle iowait irq softirq steal
	for i := range t {
		if t[i], err = strconv.ParseInt(f[i+1], 10, 64); err != nil {
			return 0, 0, fmt.Errorf("machine cpu time: %w", err)
		}
	}
	ticks := func(n int64) time.Duration { return time.Duration(n * int64(time.Second) / c.hz) }
	return ticks(t[0] + t[1] + t[2] + t[5] + t[6]), ticks(t[7]), nil
}

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
