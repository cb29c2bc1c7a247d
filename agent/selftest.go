package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/sluiceio/sluice/agent/broker"
	"github.com/sluiceio/sluice/agent/config"
	"github.com/sluiceio/sluice/buffer"
	"github.com/sluiceio/sluice/uplink"
)

// Selftest workload: small enough for an emulated CPU, large enough to cross
// several group commits and windows.
const (
	selftestDevices  = 20
	selftestMessages = 2000
)

// selftest runs the whole pipeline on this machine: the built-in broker on
// a free loopback port, an MQTT input, a windowed rule, the bbolt buffer in
// a temporary directory, and an uplink that records envelopes in memory. It
// publishes a known load and exits 0 only when the outputs account for every
// message exactly and their averages are right.
func selftest(ctx context.Context, stdout, stderr io.Writer) int {
	fail := func(format string, args ...any) int {
		fmt.Fprintf(stderr, "selftest: FAIL: "+format+"\n", args...)
		return 1
	}
	dir, err := os.MkdirTemp("", "sluice-selftest-")
	if err != nil {
		return fail("%v", err)
	}
	defer os.RemoveAll(dir)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("SLUICE_SELFTEST_VERBOSE") != "" {
		log = slog.New(slog.NewTextHandler(stderr, nil))
	}
	b, err := broker.Start("127.0.0.1:0", log)
	if err != nil {
		return fail("%v", err)
	}
	defer b.Close()
	url := "tcp://" + b.Addr()

	doc := fmt.Sprintf(`gateway: selftest
data_dir: %s
api: {disabled: true}
inputs:
  - name: telemetry
    mqtt: {url: %q, topics: [sensors/+/telemetry], qos: 1}
rules:
  - name: avg_1s
    from: telemetry
    group_by: [device]
    window: {tumbling: 1s}
    select: {avg_t: avg(temperature), n: count(*)}
uplinks:
  - name: memory
    nats: {url: "nats://127.0.0.1:4222"}
`, filepath.Join(dir, "data"), url)
	cfg, err := config.Parse([]byte(doc))
	if err != nil {
		return fail("config: %v", err)
	}
	up := &memoryUplink{want: selftestMessages, done: make(chan struct{})}
	runCtx, stop := context.WithCancel(ctx)
	agentDone := make(chan error, 1)
	ready := make(chan struct{})
	hooks := agentHooks{uplinks: map[string]uplink.Uplink{"memory": up}, ready: func() { close(ready) }}
	go func() { agentDone <- runAgent(runCtx, cfg, log, hooks) }()
	defer func() { stop(); <-agentDone }()
	select {
	case <-ready:
	case err := <-agentDone:
		return fail("agent stopped: %v", err)
	case <-time.After(30 * time.Second):
		return fail("the agent's input did not subscribe within 30s")
	}

	sums, err := publishSelftest(url)
	if err != nil {
		return fail("publish: %v", err)
	}
	select {
	case <-up.done:
	case err := <-agentDone:
		return fail("agent stopped: %v", err)
	case <-time.After(60 * time.Second):
		return fail("after 60s the outputs count %v of %d messages", up.count(), selftestMessages)
	case <-ctx.Done():
		return fail("interrupted")
	}
	n, avgSum := up.totals()
	if n != selftestMessages {
		return fail("outputs count %v messages, want %d", n, selftestMessages)
	}
	for dev, want := range sums {
		if got := avgSum[dev]; got < want-1e-6 || got > want+1e-6 {
			return fail("%s: sum of temperatures %v, want %v", dev, got, want)
		}
	}
	fmt.Fprintf(stdout, "selftest: ok: %d messages from %d devices through broker, rule, durable buffer and uplink: %d outputs, counts and averages exact\n",
		selftestMessages, selftestDevices, up.outputs())
	return 0
}

func publishSelftest(url string) (map[string]float64, error) {
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID("sluice-selftest-pub").SetConnectRetry(true))
	if t := c.Connect(); !t.WaitTimeout(10*time.Second) || t.Error() != nil {
		return nil, fmt.Errorf("connect %s: %v", url, t.Error())
	}
	defer c.Disconnect(100)
	sums := map[string]float64{}
	var tokens []mqtt.Token
	for i := 0; i < selftestMessages; i++ {
		dev := fmt.Sprintf("dev-%d", i%selftestDevices)
		t := float64(i%300) / 10
		sums[dev] += t
		tokens = append(tokens, c.Publish("sensors/"+dev+"/telemetry", 1, false, fmt.Sprintf(`{"device":%q,"temperature":%.1f}`, dev, t)))
		if len(tokens) == 200 || i == selftestMessages-1 {
			// Bounded in flight, as a well-behaved device publishes.
			for _, t := range tokens {
				if !t.WaitTimeout(30*time.Second) || t.Error() != nil {
					return nil, fmt.Errorf("publish not acked: %v", t.Error())
				}
			}
			tokens = tokens[:0]
		}
	}
	return sums, nil
}

// memoryUplink acknowledges every batch at once and keeps the envelopes'
// values; it closes done when the counts reach want.
type memoryUplink struct {
	mu     sync.Mutex
	want   float64
	n      float64
	sums   map[string]float64
	outs   int
	done   chan struct{}
	closed bool
}

func (u *memoryUplink) Name() string { return "memory" }
func (u *memoryUplink) Close() error { return nil }

func (u *memoryUplink) Deliver(_ context.Context, batch []buffer.Entry) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.sums == nil {
		u.sums = map[string]float64{}
	}
	for _, e := range batch {
		var out struct {
			Key    map[string]string  `json:"key"`
			Values map[string]float64 `json:"values"`
		}
		if err := json.Unmarshal(e.Payload, &out); err != nil {
			return fmt.Errorf("entry %d is not JSON: %w", e.Seq, err)
		}
		u.outs++
		u.n += out.Values["n"]
		u.sums[out.Key["device"]] += out.Values["avg_t"] * out.Values["n"]
	}
	if u.n >= u.want && !u.closed {
		u.closed = true
		close(u.done)
	}
	return nil
}

func (u *memoryUplink) count() float64 { u.mu.Lock(); defer u.mu.Unlock(); return u.n }
func (u *memoryUplink) outputs() int   { u.mu.Lock(); defer u.mu.Unlock(); return u.outs }

func (u *memoryUplink) totals() (float64, map[string]float64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	m := make(map[string]float64, len(u.sums))
	for k, v := range u.sums {
		m[k] = v
	}
	return u.n, m
}
