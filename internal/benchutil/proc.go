// Package benchutil holds what the benchmark commands (tools/bench,
// tools/benchingest, tools/benchuplink) share: CPU time of processes and of
// the machine, bytes written to storage and other /proc figures (Linux
// only, as the benchmarks are), and the median of runs.
package benchutil

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Clock converts the clock ticks of /proc to time.
type Clock struct {
	Hz int64 // ticks per second
}

// NewClock asks getconf for CLK_TCK once; Linux uses 100 almost everywhere,
// which is the fallback (logged with logf).
func NewClock(logf func(format string, args ...any)) Clock {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if hz, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64); err == nil && hz > 0 {
			return Clock{Hz: hz}
		}
	}
	logf("getconf CLK_TCK failed (%v); assuming 100 Hz", err)
	return Clock{Hz: 100}
}

// CPU returns the user+system CPU time process pid has used so far, all its
// threads included.
func (c Clock) CPU(pid int) (time.Duration, error) {
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
	return c.ticks(ticks), nil
}

// Machine returns the time all CPUs spent busy (user, nice, system, irq,
// softirq) and stolen by the hypervisor, from /proc/stat.
func (c Clock) Machine() (busy, steal time.Duration, err error) {
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
	return c.ticks(t[0] + t[1] + t[2] + t[5] + t[6]), c.ticks(t[7]), nil
}

func (c Clock) ticks(n int64) time.Duration { return time.Duration(n * int64(time.Second) / c.Hz) }

// WrittenBytes returns the bytes process pid has caused to be written to
// storage so far (write_bytes of /proc/<pid>/io: counted when the process
// dirties a page of a file, so a page dirtied again before the kernel wrote
// it back counts once).
func WrittenBytes(pid int) (float64, error) { return ProcNumber(pid, "io", "write_bytes") }

// ProcNumber returns the number of field in /proc/<pid>/<file>, a file of
// "name: value [kB]" lines.
func ProcNumber(pid int, file, field string) (float64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/%s", pid, file))
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
		v, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
		if err != nil {
			return 0, fmt.Errorf("%s of pid %d: %w", field, pid, err)
		}
		return v, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("%s of pid %d: %w", field, pid, err)
	}
	return 0, fmt.Errorf("%s of pid %d: not in /proc/%d/%s", field, pid, pid, file)
}
