package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluiceio/sluice/internal/testenv"
)

// agentConfig is the agent of W1 and W1a: mosquitto in, one rule,
// JetStream out, the buffer on its defaults (fsync on). Filled in: gateway,
// data dir, MQTT URL, read coalescing, quick ACKs, the ACK delay, the
// rules, NATS URL.
const agentConfig = `gateway: %s
data_dir: %s
api: {listen: "127.0.0.1:0"}
inputs:
  - name: telemetry
    mqtt:
      url: %s
      topics: [sensors/+/telemetry]
      qos: 1
      read_coalesce: %s
      quick_ack: %t
      max_ack_delay: %s
rules:
%suplinks:
  - name: cloud
    nats:
      url: %s
      subject: telemetry.{gateway}.{rule}
`

// w1Rule is W1b, the W1 of every figure without a letter: avg, max and
// count of temperature per device over a tumbling 10 s window.
const w1Rule = `  - name: w1
    from: telemetry
    group_by: [device]
    window: {tumbling: 10s}
    select:
      avg_t: avg(temperature)
      max_t: max(temperature)
      n: count(*)
`

// w1aRule is W1a: a stateless rule that passes every record above 30 °C
// upstream with its ts, so that latency can be measured record by record.
const w1aRule = `  - name: w1a
    from: telemetry
    where: temperature > 30
    select:
      temperature: temperature
      ts: ts
`

// startAgent writes a config for gateway with rules into dir and runs the
// agent until it logs "mqtt subscribed".
func (b *bench) startAgent(ctx context.Context, dir, gateway, broker, rules string) (*child, error) {
	cfg := filepath.Join(dir, "sluice.yaml")
	text := fmt.Sprintf(agentConfig, gateway, filepath.Join(dir, "data"), broker, b.opts.readCoalesce, b.opts.quickAck, b.opts.maxAckDelay, rules, b.ns.ClientURL())
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		return nil, fmt.Errorf("agent config: %w", err)
	}
	a, err := startChild(ctx, "agent", filepath.Join(dir, "agent.log"), nil, b.opts.sluice, "run", "--config", cfg)
	if err != nil {
		return nil, err
	}
	if _, err := a.waitLine(ctx, "mqtt subscribed", 15*time.Second); err != nil {
		a.stop(5 * time.Second)
		return nil, err
	}
	return a, nil
}

// mallocs reads the agent's count of heap allocations so far from its
// /metrics (go_memstats_mallocs_total); the address is the one it logged.
func mallocs(a *child) (uint64, error) {
	m := regexp.MustCompile(`local API listening.* addr=(\S+)`).FindStringSubmatch(a.lastLine("local API listening"))
	if m == nil {
		return 0, fmt.Errorf("the agent did not log its API address")
	}
	resp, err := http.Get("http://" + m[1] + "/metrics")
	if err != nil {
		return 0, fmt.Errorf("agent metrics: %w", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_memstats_mallocs_total "); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("agent metrics: no go_memstats_mallocs_total")
}

// agentTotals are the counters the agent logs when it stops.
type agentTotals struct {
	received uint64 // MQTT messages handed to the pipeline
	commits  uint64
	ok       bool // the lines were found
}

// totals reads the "input totals" and "buffer totals" lines of a stopped
// agent.
func totals(a *child) agentTotals {
	var t agentTotals
	num := func(line, key string) (uint64, bool) {
		m := regexp.MustCompile(`\b` + key + `=(\d+)`).FindStringSubmatch(line)
		if m == nil {
			return 0, false
		}
		n, err := strconv.ParseUint(m[1], 10, 64)
		return n, err == nil
	}
	var ok1, ok2 bool
	t.received, ok1 = num(a.lastLine("input totals"), "received")
	t.commits, ok2 = num(a.lastLine("buffer totals"), "commits")
	t.ok = ok1 && ok2
	return t
}

// upstream is the JetStream stream of one run's gateway and a consumer
// that sums what arrives.
type upstream struct {
	js   jetstream.JetStream
	name string
	col  *testenv.Collector
}

// openUpstream creates a stream covering telemetry.<gateway>.> and starts
// collecting it. Each run has its own gateway id, so its seqs (which start
// at 1 with a fresh data dir) are not dropped as duplicates of an earlier
// run's.
func (b *bench) openUpstream(ctx context.Context, gateway string) (*upstream, error) {
	name := "W1_" + gateway
	s, err := testenv.CreateStream(ctx, b.nc, name, "telemetry."+gateway+".>")
	if err != nil {
		return nil, fmt.Errorf("create stream %s: %w", name, err)
	}
	col, err := testenv.Collect(ctx, s)
	if err != nil {
		return nil, fmt.Errorf("consume stream %s: %w", name, err)
	}
	return &upstream{js: b.js, name: name, col: col}, nil
}

// waitCounted waits until the count column n adds up to want, or timeout,
// or ctx's end; it returns the sum it saw last.
func (u *upstream) waitCounted(ctx context.Context, want uint64, timeout time.Duration) (uint64, error) {
	type result struct {
		got float64
		err error
	}
	ch := make(chan result, 1)
	go func() {
		got, err := u.col.WaitSum("n", float64(want), timeout)
		ch <- result{got, err}
	}()
	select {
	case r := <-ch:
		return uint64(r.got), r.err
	case <-ctx.Done():
		return uint64(u.col.SumValue("n")), ctx.Err()
	}
}

func (u *upstream) close() {
	u.col.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	u.js.DeleteStream(ctx, u.name)
}
