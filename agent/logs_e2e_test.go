package main

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestLogInputEndToEnd tails a logfmt file through a rename rotation and an
// agent restart (SIGKILL) and counts every line upstream exactly once.
func TestLogInputEndToEnd(t *testing.T) {
	r := newRig(t)
	logs := filepath.Join(r.dir, "logs")
	os.MkdirAll(logs, 0o700)
	cfg := fmt.Sprintf(`gateway: gw-test
data_dir: %s
api: {disabled: true}
inputs:
  - name: applog
    log: {paths: [%q], poll_interval: 100ms}
    format: logfmt
rules:
  - name: lines_1s
    from: applog
    group_by: [device]
    window: {tumbling: 1s}
    select: {n: count(*), sum_v: sum(v)}
uplinks:
  - name: cloud
    nats: {url: %q, subject: "telemetry.{gateway}.{rule}"}
`, filepath.Join(r.dir, "data"), filepath.Join(logs, "*.log"), r.nc.ConnectedUrl())
	if err := os.WriteFile(r.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(logs, "app.log")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	write := func(from, to int) {
		for i := from; i < to; i++ {
			fmt.Fprintf(f, "level=info device=dev-%d v=%d msg=\"line %d\"\n", i%5, i, i)
		}
	}
	write(0, 500)
	agent := r.startLogAgent()
	if got, err := r.collector.WaitSum("n", 500, 30*time.Second); err != nil {
		t.Fatalf("%v (got %v)", err, got)
	}
	// Rotate by rename: lines written to the old file after the rename and
	// to the new one must all arrive.
	os.Rename(path, path+".1")
	write(500, 600)
	f.Close()
	f, _ = os.Create(path)
	write(600, 800)
	if got, err := r.collector.WaitSum("n", 800, 30*time.Second); err != nil {
		t.Fatalf("after rotation: %v (got %v)", err, got)
	}
	agent.kill(t)
	write(800, 1000)
	f.Close()
	r.startLogAgent()
	if got, err := r.collector.WaitSum("n", 1000, 30*time.Second); err != nil {
		t.Fatalf("after restart: %v (got %v)", err, got)
	}
	time.Sleep(2500 * time.Millisecond) // a double count would show within two windows
	if n, sum := r.collector.SumValue("n"), r.collector.SumValue("sum_v"); n != 1000 || sum != 999*1000/2 {
		t.Errorf("upstream counted %v lines with sum %v, want 1000 and %d", n, sum, 999*1000/2)
	}
}
