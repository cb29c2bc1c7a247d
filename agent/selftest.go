package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/sluiceio/sluice/agent/broker"
	"github.com/sluiceio/sluice/agent/config"
	"github.com/sluiceio/sluice/agent/exepages"
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
// a free loopback port and an MQTT input (or, in a build without the broker,
// the HTTP input on the loopback), a windowed rule, the bbolt buffer in
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
	// The load arrives over MQTT through the built-in broker when this
	// binary has one, else over HTTP on the loopback.
	var url, api, input string
	if broker.Built {
		b, err := broker.Start("127.0.0.1:0", log)
		if err != nil {
			return fail("%v", err)
		}
		defer b.Close()
		url = "tcp://" + b.Addr()
		api = "{disabled: true}"
		input = fmt.Sprintf("mqtt: {url: %q, topics: [sensors/+/telemetry], qos: 1}", url)
	} else {
		api = `{listen: "127.0.0.1:0"}`
		input = "http: {}"
	}

	doc := fmt.Sprintf(`gateway: selftest
data_dir: %s
api: %s
inputs:
  - name: telemetry
    %s
rules:
  - name: avg_1s
    from: telemetry
    group_by: [device]
    window: {tumbling: 1s}
    select: {avg_t: avg(temperature), n: count(*)}
uplinks:
  - name: memory
    nats: {url: "nats://127.0.0.1:4222"}
`, filepath.Join(dir, "data"), api, input)
	cfg, err := config.Parse([]byte(doc))
	if err != nil {
		return fail("config: %v", err)
	}
	up := &memoryUplink{want: selftestMessages, done: make(chan struct{})}
	runCtx, stop := context.WithCancel(ctx)
	agentDone := make(chan error, 1)
	ready := make(chan struct{})
	apiAddr := make(chan net.Addr, 1)
	// What the agent's release of its start-up pages did on this machine
	// (set before ready is closed, so read after it without a lock).
	pages := "kept (SLUICE_KEEP_EXE_PAGES is set)"
	hooks := agentHooks{uplinks: map[string]uplink.Uplink{"memory": up}, ready: func() { close(ready) },
		apiAddr: func(a net.Addr) { apiAddr <- a },
		released: func(st exepages.Stats, err error) {
			if err != nil {
				pages = "not released: " + err.Error()
				return
			}
			pages = fmt.Sprintf("released: %d mappings (%d skipped), RSS %.1f → %.1f MiB", st.Mappings, st.Skipped, float64(st.RSSFrom)/(1<<20), float64(st.RSSTo)/(1<<20))
		}}
	go func() { agentDone <- runAgent(runCtx, cfg, log, hooks) }()
	defer func() { stop(); <-agentDone }()
	select {
	case <-ready:
	case err := <-agentDone:
		return fail("agent stopped: %v", err)
	case <-time.After(30 * time.Second):
		return fail("the agent's input did not subscribe within 30s")
	}

	var (
		sums map[string]float64
		via  string
	)
	if broker.Built {
		sums, err = publishSelftest(url)
		via = "the built-in broker"
	} else {
		var a net.Addr
		select {
		case a = <-apiAddr:
		case err := <-agentDone:
			return fail("agent stopped: %v", err)
		case <-time.After(30 * time.Second):
			return fail("the local API did not listen within 30s")
		}
		sums, err = postSelftest(a.String(), "/ingest/telemetry")
		via = "HTTP on the loopback"
	}
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
	fmt.Fprintf(stdout, "selftest: ok: %d messages from %d devices through %s, a rule, the durable buffer and an uplink: %d outputs, counts and averages exact\n",
		selftestMessages, selftestDevices, via, up.outputs())
	fmt.Fprintf(stdout, "selftest: start-up pages %s\n", pages)
	return 0
}

// selftestRecord is the i'th message of the load.
func selftestRecord(i int) (dev string, temperature float64, payload string) {
	dev = fmt.Sprintf("dev-%d", i%selftestDevices)
	temperature = float64(i%300) / 10
	return dev, temperature, fmt.Sprintf(`{"device":%q,"temperature":%.1f}`, dev, temperature)
}

// postSelftest posts the load as NDJSON to the HTTP input at addr, 200
// records a request; each answer (202) comes after the commit that covers
// its records. It speaks HTTP/1.1 over a plain connection: net/http's client
// would add a third of a MiB to the binary for this one use.
func postSelftest(addr, path string) (map[string]float64, error) {
	sums := map[string]float64{}
	var body bytes.Buffer
	for i := 0; i < selftestMessages; i++ {
		dev, t, payload := selftestRecord(i)
		sums[dev] += t
		body.WriteString(payload)
		body.WriteByte('\n')
		if (i+1)%200 == 0 || i == selftestMessages-1 {
			if err := post(addr, path, body.Bytes()); err != nil {
				return nil, err
			}
			body.Reset()
		}
	}
	return sums, nil
}

// post sends one POST request and wants 202 Accepted.
func post(addr, path string, body []byte) error {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	req := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-ndjson\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", path, addr, len(body))
	if _, err := c.Write(append([]byte(req), body...)); err != nil {
		return fmt.Errorf("POST %s: %w", path, err)
	}
	resp, err := io.ReadAll(io.LimitReader(c, 4096))
	if err != nil {
		return fmt.Errorf("POST %s: %w", path, err)
	}
	if !bytes.HasPrefix(resp, []byte("HTTP/1.1 202 ")) {
		status, _, _ := bytes.Cut(resp, []byte("\r\n"))
		_, msg, _ := bytes.Cut(resp, []byte("\r\n\r\n"))
		return fmt.Errorf("POST %s: %s: %s", path, status, msg)
	}
	return nil
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
		dev, t, payload := selftestRecord(i)
		sums[dev] += t
		tokens = append(tokens, c.Publish("sensors/"+dev+"/telemetry", 1, false, payload))
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
