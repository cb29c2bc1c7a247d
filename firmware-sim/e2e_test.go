package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

type rawMsg struct {
	topic   string
	payload []byte
}

// inbox records what an inline subscription of the broker receives. mochi
// acknowledges a QoS 1 publish just before it delivers it, so after a run
// the test waits for the count it expects (waitN) before it looks.
type inbox struct {
	mu      sync.Mutex
	msgs    []rawMsg
	watch   func(rawMsg) // called under mu for each message, if set
	want    int
	reached chan struct{}
}

// waitN waits until the inbox holds at least n messages, or fails the test
// after failAfter, and returns them.
func (in *inbox) waitN(t *testing.T, n uint64) []rawMsg {
	t.Helper()
	in.mu.Lock()
	if uint64(len(in.msgs)) >= n {
		in.mu.Unlock()
		return in.all()
	}
	in.want, in.reached = int(n), make(chan struct{})
	ch := in.reached
	in.mu.Unlock()
	select {
	case <-ch:
	case <-time.After(failAfter):
		t.Fatalf("broker delivered %d of %d messages", len(in.all()), n)
	}
	return in.all()
}

func collect(t *testing.T, srv *mochi.Server, filter string, id int) *inbox {
	t.Helper()
	in := &inbox{}
	if err := srv.Subscribe(filter, id, func(_ *mochi.Client, _ packets.Subscription, pk packets.Packet) {
		in.mu.Lock()
		defer in.mu.Unlock()
		m := rawMsg{pk.TopicName, slices.Clone(pk.Payload)}
		in.msgs = append(in.msgs, m)
		if in.reached != nil && len(in.msgs) == in.want {
			close(in.reached)
		}
		if in.watch != nil {
			in.watch(m)
		}
	}); err != nil {
		t.Fatal(err)
	}
	return in
}

func (in *inbox) all() []rawMsg {
	in.mu.Lock()
	defer in.mu.Unlock()
	return slices.Clone(in.msgs)
}

func readTruth(t *testing.T, path string) ([]Event, []byte) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var evs []Event
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		var e Event
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&e); err != nil {
			t.Fatalf("truth line %s: %v", sc.Bytes(), err)
		}
		evs = append(evs, e)
	}
	return evs, data
}

func faultConfig(broker, truth string) config {
	cfg := testConfig(broker)
	cfg.Count, cfg.Rate, cfg.Devices = 20000, 20000, 60
	cfg.StartTSMs, cfg.StartTSSet = testTS, true
	cfg.Mix, _ = ParseMix("temphum:3,vibration:1,power:1,door:1,gps:1")
	cfg.Faults = Faults{Spike: 0.005, Shift: 0.001, ShiftFor: 200 * time.Millisecond, Stuck: 0.001,
		StuckFor: 200 * time.Millisecond, Malformed: 0.005, OversizedBytes: 8192, Duplicate: 0.005,
		SkewDevices: 0.1, ResetRate: 0.002}
	cfg.TruthOut = truth
	return cfg
}

// TestFaultsEndToEnd injects every per-message fault against a real broker
// and checks that the ground-truth file matches what arrived: each labelled
// anomaly is where the file says, nothing anomalous arrived unlabelled, the
// counts are within their bounds and equal the summary's, and a second run
// with the same seed sends the same payloads and the same ground truth.
func TestFaultsEndToEnd(t *testing.T) {
	runOnce := func() (summary, []rawMsg, []Event, []byte) {
		srv, broker := startBroker(t)
		in := collect(t, srv, "sensors/#", 1)
		cfg := faultConfig(broker, filepath.Join(t.TempDir(), "truth.jsonl"))
		var log bytes.Buffer
		sum, err := run(context.Background(), cfg, newConsole(&log))
		if err != nil {
			t.Fatalf("run: %v\n%s", err, log.String())
		}
		evs, raw := readTruth(t, cfg.TruthOut)
		return sum, in.waitN(t, sum.Sent), evs, raw
	}
	sum, msgs, evs, raw := runOnce()
	if !sum.OK() || sum.Errors != 0 || sum.Sent != 20000+sum.Duplicates || sum.Acked != sum.Sent || uint64(len(msgs)) != sum.Sent {
		t.Fatalf("summary %s ok=%v duplicates=%d; broker delivered %d", sum, sum.OK(), sum.Duplicates, len(msgs))
	}

	fleet := NewFleet(FleetOptions{Devices: 60, Mix: faultConfig("", "").Mix, Topic: "sensors/{device}/telemetry"})
	type key struct {
		dev string
		ts  int64
	}
	byKind := map[string]map[key]Event{}
	count := map[string]uint64{}
	badJSON := map[string]int{} // by device
	for _, e := range evs {
		if e.Lost {
			t.Fatalf("lost event %+v", e)
		}
		kind := e.Kind
		if kind == evMalformed {
			kind = e.Detail
		}
		if byKind[kind] == nil {
			byKind[kind] = map[key]Event{}
		}
		byKind[kind][key{e.Device, e.TS}] = e
		count[e.Kind]++
		if e.Detail == "bad_json" {
			badJSON[e.Device]++
		}
	}
	for kind, n := range count {
		if sum.Faults[kind] != n {
			t.Errorf("%s: summary %d, ground truth %d", kind, sum.Faults[kind], n)
		}
	}
	for kind, p := range map[string]float64{evSpike: 0.005, evMalformed: 0.005, evDuplicate: 0.005, evShift: 0.001, evStuck: 0.001} {
		if !within(int(count[kind]), 20000, p) {
			t.Errorf("%s: %d in 20000 messages at %v", kind, count[kind], p)
		}
	}
	if count[evSkew] != 6 || count[evReset] == 0 {
		t.Errorf("%d skewed devices (want 6), %d counter resets", count[evSkew], count[evReset])
	}

	seen := map[key]int{}
	gotBad := map[string]int{}
	for _, m := range msgs {
		dev := strings.TrimSuffix(strings.TrimPrefix(m.topic, "sensors/"), "/telemetry")
		i, ok := fleet.Index(dev)
		if !ok {
			t.Fatalf("message on %s", m.topic)
		}
		if !json.Valid(m.payload) {
			gotBad[dev]++
			continue
		}
		var p map[string]any
		dec := json.NewDecoder(bytes.NewReader(m.payload))
		dec.UseNumber()
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		ts, _ := p["ts"].(json.Number).Int64()
		k := key{dev, ts}
		seen[k]++
		info := profiles[fleet.Profile(i)]
		v := p[info.primary]
		_, isString := v.(string)
		if _, ok := byKind["wrong_type"][k]; ok != isString {
			t.Errorf("%s: wrong type %v, labelled %v", m.payload, isString, ok)
		}
		n, isNum := v.(json.Number)
		f, _ := n.Float64()
		if _, ok := byKind["out_of_range"][k]; ok != (isNum && f == info.bad) {
			t.Errorf("%s: labelled out of range %v", m.payload, ok)
		}
		if _, ok := byKind["oversized"][k]; ok != (len(m.payload) == 8192) || (!ok && len(m.payload) > 300) {
			t.Errorf("%d bytes: labelled oversized %v", len(m.payload), ok)
		}
		if e, ok := byKind[evSpike][k]; ok && f != e.Value {
			t.Errorf("%s: spike labelled with value %v", m.payload, e.Value)
		}
	}
	if !maps.Equal(gotBad, badJSON) {
		t.Errorf("bad JSON per device: received %v, labelled %v", gotBad, badJSON)
	}
	for k, n := range seen {
		if _, ok := byKind[evDuplicate][k]; ok != (n == 2) || n > 2 {
			t.Errorf("%v received %d times, labelled duplicate %v", k, n, ok)
		}
	}
	for k := range byKind[evSpike] {
		if seen[k] == 0 {
			t.Errorf("spike %v never arrived", k)
		}
	}

	// Determinism: the same seed sends the same payloads in the same order
	// per device, and writes the same ground truth.
	sum2, msgs2, _, raw2 := runOnce()
	if !bytes.Equal(raw, raw2) || sum2.Sent != sum.Sent {
		t.Fatalf("second run: ground truth differs or sent %d vs %d", sum2.Sent, sum.Sent)
	}
	perTopic := func(ms []rawMsg) map[string][]string {
		out := map[string][]string{}
		for _, m := range ms {
			out[m.topic] = append(out[m.topic], string(m.payload))
		}
		return out
	}
	a, b := perTopic(msgs), perTopic(msgs2)
	for topic := range a {
		if !slices.Equal(a[topic], b[topic]) {
			t.Fatalf("%s: payloads differ between runs with the same seed", topic)
		}
	}
}

// TestCommandsEndToEnd sends commands to a running fleet through the broker
// and checks the replies and their effect on the device's messages.
func TestCommandsEndToEnd(t *testing.T) {
	srv, broker := startBroker(t)
	first := make(chan struct{})
	var once sync.Once
	tele := collect(t, srv, "sensors/#", 1)
	tele.watch = func(rawMsg) { once.Do(func() { close(first) }) }
	replies := make(chan []byte, 10)
	if err := srv.Subscribe("devices/+/cmd/res", 2, func(_ *mochi.Client, _ packets.Subscription, pk packets.Packet) {
		if pk.TopicName == "devices/dev-2/cmd/res" {
			replies <- slices.Clone(pk.Payload)
		}
	}); err != nil {
		t.Fatal(err)
	}

	cfg := testConfig(broker)
	cfg.Devices, cfg.Rate, cfg.CmdTopic = 5, 500, "devices/{device}/cmd"
	ctx, cancel := context.WithCancel(context.Background())
	type result struct {
		sum summary
		err error
	}
	res := make(chan result, 1)
	go func() {
		sum, err := run(ctx, cfg, newConsole(io.Discard))
		res <- result{sum, err}
	}()
	defer cancel()
	select {
	case <-first: // the command subscription is made before the first message
	case r := <-res:
		t.Fatalf("run ended: %v", r.err)
	case <-time.After(failAfter):
		t.Fatal("no telemetry")
	}
	reply := func(topic, payload string) map[string]any {
		t.Helper()
		if err := srv.Publish(topic, []byte(payload), false, 1); err != nil {
			t.Fatal(err)
		}
		select {
		case b := <-replies:
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatalf("reply %s: %v", b, err)
			}
			return m
		case <-time.After(failAfter):
			t.Fatalf("no reply to %s", topic)
			return nil
		}
	}

	// After set-interval, dev-2's messages are 300 ms of message time apart.
	after := make(chan []int64, 1)
	var dev2 []int64
	tele.mu.Lock()
	tele.watch = func(m rawMsg) {
		if m.topic != "sensors/dev-2/telemetry" || dev2 == nil {
			return
		}
		var p struct{ TS int64 }
		json.Unmarshal(m.payload, &p)
		if dev2 = append(dev2, p.TS); len(dev2) == 4 {
			after <- slices.Clone(dev2)
		}
	}
	tele.mu.Unlock()
	m := reply("devices/dev-2/cmd/set-interval", `{"id":"r1","interval_ms":300}`)
	if m["ok"] != true || m["id"] != "r1" || m["interval_ms"] != 300.0 || m["turn_ms"] != 10.0 || m["profile"] != "temphum" {
		t.Fatalf("set-interval reply %v", m)
	}
	tele.mu.Lock()
	dev2 = []int64{}
	tele.mu.Unlock()
	select {
	case ts := <-after:
		for i := 1; i < len(ts); i++ {
			if d := ts[i] - ts[i-1]; d < 300 || d > 320 {
				t.Fatalf("dev-2 sent at %v after set-interval 300", ts)
			}
		}
	case <-time.After(failAfter):
		t.Fatal("dev-2 did not send 4 messages")
	}
	if m := reply("devices/dev-2/cmd/get-state", ``); m["ok"] != true || m["interval_ms"] != 300.0 {
		t.Fatalf("get-state reply %v", m)
	}
	if m := reply("devices/dev-2/cmd/self-destruct", `{"id":"r3"}`); m["ok"] != false || m["id"] != "r3" || m["error"] == nil {
		t.Fatalf("unknown command reply %v", m)
	}
	cancel()
	r := <-res
	if r.err != nil || r.sum.Commands != 3 || r.sum.Withheld == 0 || r.sum.Errors != 0 || !r.sum.OK() {
		t.Fatalf("summary %s commands=%d withheld=%d err=%v", r.sum, r.sum.Commands, r.sum.Withheld, r.err)
	}
}

// TestStormEndToEnd takes both connections down twice during a run: the
// devices on a down connection do not send, every message sent arrives and
// is acknowledged, and the counts add up.
func TestStormEndToEnd(t *testing.T) {
	srv, broker := startBroker(t)
	in := collect(t, srv, "sensors/#", 1)
	cfg := testConfig(broker)
	cfg.Devices, cfg.Connections, cfg.Rate, cfg.Count = 10, 2, 2000, 3000
	cfg.Faults = Faults{StormEvery: 500 * time.Millisecond, StormDown: 100 * time.Millisecond}
	cfg.TruthOut = filepath.Join(t.TempDir(), "truth")
	var log bytes.Buffer
	sum, err := run(context.Background(), cfg, newConsole(&log))
	if err != nil {
		t.Fatal(err)
	}
	in.waitN(t, sum.Sent)
	if !sum.OK() || sum.Errors != 0 || sum.Storms != 4 || sum.Disconnects != 4 || sum.Reconnects != 4 ||
		sum.Offline == 0 || sum.Sent+sum.Offline != 3000 || uint64(len(in.all())) != sum.Sent {
		t.Fatalf("summary %s ok=%v storms=%d disconnects=%d reconnects=%d offline=%d; broker got %d\n%s",
			sum, sum.OK(), sum.Storms, sum.Disconnects, sum.Reconnects, sum.Offline, len(in.all()), log.String())
	}
	evs, _ := readTruth(t, cfg.TruthOut)
	if len(evs) != 4 || evs[0].Kind != "disconnect" || evs[0].TS != evs[1].TS || evs[2].TS-evs[0].TS != 500 {
		t.Fatalf("truth %+v", evs)
	}
}

// TestScenarioRuns runs every example scenario, shortened, through realMain
// and checks its JSON summary (and device logs, where it has them).
func TestScenarioRuns(t *testing.T) {
	files, _ := filepath.Glob("../examples/scenarios/*.yaml")
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			_, broker := startBroker(t)
			dir := t.TempDir()
			sumPath := filepath.Join(dir, "summary.json")
			args := []string{"--scenario", f, "--broker", broker, "--count", "1000", "--rate", "10000",
				"--truth-out", filepath.Join(dir, "truth"), "--summary-json", sumPath, "--quiet"}
			sc, err := LoadScenario(f)
			if err != nil {
				t.Fatal(err)
			}
			if sc.Logs.Dir != "" {
				args = append(args, "--log-dir", filepath.Join(dir, "logs"))
			}
			var stdout, stderr bytes.Buffer
			if code := realMain(append(args, "--json"), &stdout, &stderr); code != 0 {
				t.Fatalf("exit %d\n%s", code, stderr.String())
			}
			data, err := os.ReadFile(sumPath)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(data, stdout.Bytes()) {
				t.Fatalf("--json and --summary-json differ:\n%s\n%s", stdout.Bytes(), data)
			}
			var s summaryJSON
			dec := json.NewDecoder(bytes.NewReader(data))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&s); err != nil {
				t.Fatal(err)
			}
			if !s.OK || s.Target != 1000 || s.Sent-s.Duplicates+s.Offline != 1000 || s.Errors != 0 || s.Rate <= 0 {
				t.Fatalf("summary %s", data)
			}
			devs := 0
			for _, n := range s.Profiles {
				devs += n
			}
			if devs != sc.Devices {
				t.Fatalf("profiles %v, want %d devices", s.Profiles, sc.Devices)
			}
			if sc.Logs.Dir != "" {
				logs, _ := filepath.Glob(filepath.Join(dir, "logs", "*.log"))
				if len(logs) != sc.Logs.Devices {
					t.Fatalf("%d log files, want %d", len(logs), sc.Logs.Devices)
				}
				b, _ := os.ReadFile(logs[0])
				if !bytes.Contains(b, []byte(" INFO dev-")) {
					t.Fatalf("log %s: %q", logs[0], b)
				}
			}
		})
	}
}

// TestRateAccuracyMosquitto is the rate check against mosquitto:
// 2,000 msg/s for 10 s delivers 20,000 messages, in 10 s ± 1%.
func TestRateAccuracyMosquitto(t *testing.T) {
	if testing.Short() {
		t.Skip("10 s")
	}
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		if bin, err = exec.LookPath("/usr/sbin/mosquitto"); err != nil {
			t.Skip("mosquitto not installed")
		}
	}
	broker := startMosquitto(t, bin)
	var mu sync.Mutex
	got := 0
	reached := make(chan struct{})
	opts := mqtt.NewClientOptions().AddBroker(broker).SetClientID("rate-counter").SetConnectRetry(true).
		SetConnectRetryInterval(50 * time.Millisecond)
	cl := mqtt.NewClient(opts)
	if tok := cl.Connect(); !tok.WaitTimeout(failAfter) || tok.Error() != nil {
		t.Fatalf("connect to mosquitto: %v", tok.Error())
	}
	defer cl.Disconnect(0)
	if tok := cl.Subscribe("sensors/+/telemetry", 0, func(mqtt.Client, mqtt.Message) {
		mu.Lock()
		defer mu.Unlock()
		if got++; got == 20000 {
			close(reached)
		}
	}); !tok.WaitTimeout(failAfter) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	cfg := testConfig(broker)
	cfg.Devices, cfg.Rate, cfg.Duration, cfg.QoS = 1000, 2000, 10*time.Second, 0
	sum, err := run(context.Background(), cfg, newConsole(io.Discard))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-reached:
	case <-time.After(failAfter):
	}
	mu.Lock()
	n := got
	mu.Unlock()
	if sum.Sent != 20000 || sum.Errors != 0 || n != 20000 ||
		sum.Elapsed < 9900*time.Millisecond || sum.Elapsed > 10100*time.Millisecond {
		t.Fatalf("summary %s, subscriber got %d; want 20000 in 10 s ± 1%%", sum, n)
	}
	t.Logf("mosquitto: %s, subscriber got %d", sum, n)
}

func startMosquitto(t *testing.T, bin string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	conf := filepath.Join(t.TempDir(), "mosquitto.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, "listener %d 127.0.0.1\nallow_anonymous true\n", port), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", conf)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return "tcp://127.0.0.1:" + strconv.Itoa(port)
}
