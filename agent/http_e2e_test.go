package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestHTTPAndHealthInputs posts NDJSON to the agent's /ingest/<input>: the
// 202 comes after the commit and every record is counted upstream; a health
// input emits the gateway's own figures; bad bodies get 400 and 413.
func TestHTTPAndHealthInputs(t *testing.T) {
	r := newRig(t)
	cfg := fmt.Sprintf(`gateway: gw-test
data_dir: %s
api: {listen: "127.0.0.1:0"}
inputs:
  - name: devices
    http: {max_body: 64KiB}
  - name: gw
    health: {interval: 200ms}
rules:
  - name: posted_1s
    from: devices
    group_by: [device]
    window: {tumbling: 1s}
    select: {n: count(*), sum_v: sum(v)}
  - name: health
    from: gw
    select: {mem_percent: mem_percent, probe: 1}
uplinks:
  - name: cloud
    nats: {url: %q, subject: "telemetry.{gateway}.{rule}"}
`, filepath.Join(r.dir, "data"), r.nc.ConnectedUrl())
	os.WriteFile(r.config, []byte(cfg), 0o600)
	r.startLogAgent()
	url := "http://" + apiAddr(t, filepath.Join(r.dir, "agent.log")) + "/ingest/devices"
	post := func(body string) (int, string) {
		resp, err := http.Post(url, "application/x-ndjson", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	var body strings.Builder
	for i := 0; i < 300; i++ {
		fmt.Fprintf(&body, "{\"device\":\"d%d\",\"v\":%d}\n", i%3, i)
	}
	if code, resp := post(body.String()); code != 202 || !strings.Contains(resp, `"accepted":300`) {
		t.Fatalf("POST: %d %s", code, resp)
	}
	if code, resp := post("{\"device\":\"d1\"}\nnot json\n"); code != 400 || !strings.Contains(resp, "line 2") {
		t.Errorf("bad line: %d %s", code, resp)
	}
	if code, _ := post(strings.Repeat("x", 70<<10)); code != 413 {
		t.Errorf("oversized body: %d", code)
	}
	if got, err := r.collector.WaitSum("n", 300, 30*time.Second); err != nil {
		t.Fatalf("%v (got %v)", err, got)
	}
	if got, err := r.collector.WaitSum("probe", 2, 30*time.Second); err != nil {
		t.Fatalf("health records: %v (got %v)", err, got)
	}
	envs, _, _ := r.collector.Snapshot()
	for _, e := range envs {
		if e.Rule == "health" && (e.Values["mem_percent"] <= 0 || e.Values["mem_percent"] > 100) {
			t.Errorf("health output %v", e.Values)
		}
	}
	if sum := r.collector.SumValue("sum_v"); sum != 299*300/2 {
		t.Errorf("sum of v %v, want %d", sum, 299*300/2)
	}
}
