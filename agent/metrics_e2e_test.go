package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestMetricsMatchWhatWasSentAndDelivered scrapes /metrics after an
// end-to-end run and compares its counters with what the publisher sent and
// what the JetStream stream received.
func TestMetricsMatchWhatWasSentAndDelivered(t *testing.T) {
	r := newRig(t)
	r.startAgent()
	addr := apiAddr(t, filepath.Join(r.dir, "agent.log"))
	publish(t, r.broker.URL, 10, 2000, 0, nil)
	if got, err := r.collector.WaitSum("n", 2000, 30*time.Second); err != nil {
		t.Fatalf("%v (got %v)", err, got)
	}
	envs, _, _ := r.collector.Snapshot()
	want := map[string]float64{
		`sluice_input_received_total{input="telemetry"}`:     2000,
		`sluice_input_messages_total{input="telemetry"}`:     2000,
		`sluice_input_dead_letters_total{input="telemetry"}`: 0,
		`sluice_rule_processed_total{rule="temp_1s"}`:        2000,
		`sluice_rule_emitted_total{rule="temp_1s"}`:          float64(len(envs)),
		`sluice_uplink_delivered_total{uplink="cloud"}`:      float64(len(envs)),
		`sluice_pipeline_outputs_total`:                      float64(len(envs)),
		`sluice_buffer_last_seq`:                             float64(len(envs)),
		`sluice_buffer_records`:                              0,
		`sluice_ready`:                                       1,
	}
	// The uplink's ack reaches the metrics a moment after the stream has
	// the message.
	waitMetrics(t, addr, want, "metrics disagree with the run")
}

// waitMetrics polls the agent's /metrics at addr until every series of want
// has its value, or fails with what and the differences after 10 s. No event
// tells a scrape that an ack landed or a file closed.
func waitMetrics(t *testing.T, addr string, want map[string]float64, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := scrape(t, "http://"+addr+"/metrics")
		var diff []string
		for k, v := range want {
			if g, ok := got[k]; !ok || g != v {
				diff = append(diff, fmt.Sprintf("%s = %v (present %v), want %v", k, g, ok, v))
			}
		}
		if len(diff) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s:\n%s", what, strings.Join(diff, "\n"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// apiAddr reads the local API's address from the agent's log.
func apiAddr(t *testing.T, logPath string) string {
	t.Helper()
	re := regexp.MustCompile(`local API listening.* addr=(\S+)`)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(logPath)
		if m := re.FindSubmatch(b); m != nil {
			return string(m[1])
		}
		time.Sleep(20 * time.Millisecond) // the log is a file; nothing signals a new line
	}
	t.Fatal("the agent did not log its API address")
	return ""
}

// scrape reads a Prometheus text page into name{labels} → value.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %s: %s", url, resp.Status, b)
	}
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			m[line[:i]] = v
		}
	}
	return m
}
