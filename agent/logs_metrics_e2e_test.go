package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLogInputMetrics runs the agent on a log file that is appended to and
// rotated by rename, and checks the log families of /metrics against what
// was written: lines, bytes, files opened and open, one rotation.
func TestLogInputMetrics(t *testing.T) {
	r := newRig(t)
	logs := filepath.Join(r.dir, "logs")
	if err := os.MkdirAll(logs, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`gateway: gw-test
data_dir: %s
api: {listen: "127.0.0.1:0"}
inputs:
  - name: applog
    log: {paths: [%q], poll_interval: 100ms, rotate_wait: 200ms}
    format: logfmt
rules:
  - name: lines_1s
    from: applog
    group_by: [device]
    window: {tumbling: 1s}
    select: {n: count(*)}
uplinks:
  - name: cloud
    nats: {url: %q, subject: "telemetry.{gateway}.{rule}"}
`, filepath.Join(r.dir, "data"), filepath.Join(logs, "*.log"), r.nc.ConnectedUrl())
	if err := os.WriteFile(r.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(logs, "app.log")
	var written int
	write := func(p string, from, to int) {
		f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for i := from; i < to; i++ {
			fmt.Fprintf(&b, "level=info device=dev-%d v=%d\n", i%5, i)
		}
		n, err := f.WriteString(b.String())
		if err != nil {
			t.Fatal(err)
		}
		written += n
		f.Close()
	}
	write(path, 0, 100)
	r.startLogAgent()
	addr := apiAddr(t, filepath.Join(r.dir, "agent.log"))
	write(path, 100, 150) // appended while tailed
	if got, err := r.collector.WaitSum("n", 150, 30*time.Second); err != nil {
		t.Fatalf("%v (got %v)", err, got)
	}
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	write(path, 150, 200)
	if got, err := r.collector.WaitSum("n", 200, 30*time.Second); err != nil {
		t.Fatalf("after rotation: %v (got %v)", err, got)
	}
	want := map[string]float64{
		`sluice_log_lines_total{input="applog"}`:        200,
		`sluice_log_bytes_total{input="applog"}`:        float64(written),
		`sluice_log_files_opened_total{input="applog"}`: 2,
		`sluice_log_files_open{input="applog"}`:         1, // app.log.1 closed after rotate_wait
		`sluice_log_rotations_total{input="applog"}`:    1,
		`sluice_log_truncations_total{input="applog"}`:  0,
		`sluice_log_long_lines_total{input="applog"}`:   0,
		`sluice_log_resumed_total{input="applog"}`:      0,
		`sluice_log_copies_total{input="applog"}`:       0,
		`sluice_log_uncovered_total{input="applog"}`:    0,
		`sluice_input_messages_total{input="applog"}`:   200,
	}
	// The rotated file closes rotate_wait after its last growth.
	waitMetrics(t, addr, want, "log metrics disagree with the files")
}
