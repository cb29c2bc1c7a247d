package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// The log rotation stress tests (issue 5, "What it must show" 3): a writer
// appends 100,000 numbered lines, rotating every 1,000, while the agent is
// SIGKILLed and started again 5 times; upstream, every line is counted
// exactly once (one output per line, carrying its number).
//
// What a tailer cannot see is left out, as logrotate documents it: with
// copytruncate, lines written between the copy and the truncate are lost,
// so the writer does not write then (it does the rotation itself). Rotated
// files are kept (numbered, never deleted or compressed), so a file rotated
// away while the agent is down can still be found by its identity.

const (
	stressLines  = 100_000
	stressRotate = 1_000
	stressKills  = 5
	stressRate   = 6_000 // lines per second: the run lasts about 17 s
)

const logStressConfig = `gateway: gw-test
data_dir: %s
api: {disabled: true}
inputs:
  - name: applog
    log: {paths: [%q], poll_interval: 50ms, rotate_wait: 2s}
    format: logfmt
rules:
  - name: each
    from: applog
    select: {line: i, n: 1}
uplinks:
  - name: cloud
    nats: {url: %q, subject: "telemetry.{gateway}.{rule}"}
`

func TestLogRotationStressRename(t *testing.T) { logRotationStress(t, false) }

func TestLogRotationStressCopyTruncate(t *testing.T) { logRotationStress(t, true) }

func logRotationStress(t *testing.T, copyTruncate bool) {
	r, stream := newUpstreamRig(t)
	logs := filepath.Join(r.dir, "logs")
	if err := os.MkdirAll(logs, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(logs, "app.log")
	cfg := fmt.Sprintf(logStressConfig, filepath.Join(r.dir, "data"), path, r.nc.ConnectedUrl())
	if err := os.WriteFile(r.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := openLog(path)
	if err != nil {
		t.Fatal(err)
	}
	r.startLogAgent()

	var written atomic.Int64
	werr := make(chan error, 1)
	go func() { werr <- writeRotating(path, f, copyTruncate, &written) }()

	// Kill the agent at evenly spaced points of the run and start it again
	// at once; the writer does not wait for it.
	for k := 1; k <= stressKills; k++ {
		at := int64(k * stressLines / (stressKills + 1))
		for written.Load() < at {
			select {
			case err := <-werr:
				t.Fatalf("writer stopped early: %v", err)
			case <-time.After(5 * time.Millisecond): // pacing the kills against the writer's progress
			}
		}
		r.agent.kill(t)
		r.startLogAgent()
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	if got, err := r.collector.WaitSum("n", stressLines, 30*time.Second); err != nil {
		t.Errorf("%v (got %v)", err, got) // the check below says which
	}
	drain(r, stream)

	envs, _, bad := r.collector.Snapshot()
	if bad != 0 {
		t.Errorf("%d upstream messages were not valid JSON", bad)
	}
	seen := make([]int, stressLines)
	var dups, gaps, outside int
	var ranges []string // of missing lines
	for _, e := range envs {
		i := int(e.Values["line"])
		if i < 0 || i >= stressLines || float64(i) != e.Values["line"] {
			outside++
			continue
		}
		seen[i]++
	}
	for i, n := range seen {
		switch {
		case n == 0:
			if i == 0 || seen[i-1] != 0 {
				ranges = append(ranges, fmt.Sprint(i))
			} else if i+1 == len(seen) || seen[i+1] != 0 {
				ranges[len(ranges)-1] += fmt.Sprintf("-%d", i)
			}
			gaps++
		case n > 1:
			if dups < 10 {
				t.Errorf("line %d counted %d times", i, n)
			}
			dups++
		}
	}
	if gaps+dups+outside > 0 {
		t.Errorf("%d lines missing (%v), %d counted more than once, %d outputs not a line number (of %d outputs)",
			gaps, ranges, dups, outside, len(envs))
	}
}

// writeRotating appends lines "i=<n> msg=..." to path at stressRate,
// rotating every stressRotate lines: by rename to path.<k> and a new file,
// or by copying to path.<k> and truncating path.
func writeRotating(path string, f *os.File, copyTruncate bool, written *atomic.Int64) error {
	start := time.Now()
	buf := make([]byte, 0, 128)
	for i := 0; i < stressLines; i++ {
		if i > 0 && i%stressRotate == 0 {
			rotated := fmt.Sprintf("%s.%d", path, i/stressRotate)
			var err error
			if copyTruncate {
				err = copyAndTruncate(f, rotated)
			} else {
				if err = f.Close(); err == nil {
					if err = os.Rename(path, rotated); err == nil {
						f, err = openLog(path)
					}
				}
			}
			if err != nil {
				return fmt.Errorf("rotate at line %d: %w", i, err)
			}
		}
		buf = fmt.Appendf(buf[:0], "i=%d msg=\"line %d of the stress test\"\n", i, i)
		if _, err := f.Write(buf); err != nil {
			return fmt.Errorf("write line %d: %w", i, err)
		}
		written.Store(int64(i + 1))
		if due := start.Add(time.Duration(i) * time.Second / stressRate); time.Until(due) > time.Millisecond {
			time.Sleep(time.Until(due)) // pacing the writer, not synchronising
		}
	}
	return f.Close()
}

// openLog opens a log file as loggers do, with O_APPEND: after a truncation
// the next write goes to the new end, not past it.
func openLog(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_TRUNC, 0o644)
}

// copyAndTruncate does what logrotate's copytruncate does: copy the file's
// content to rotated, then truncate it in place.
func copyAndTruncate(f *os.File, rotated string) error {
	src, err := os.Open(f.Name())
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.Create(rotated)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	if err := dst.Close(); err != nil {
		return err
	}
	return f.Truncate(0)
}
