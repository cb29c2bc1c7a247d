package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluiceio/sluice/agent/api"
	"github.com/sluiceio/sluice/internal/testenv"
)

// These tests restart the MQTT broker under a running agent (issue 5,
// "What it must show" 2) with firmware-sim publishing QoS 1 beside it, and
// check upstream, message by message, that every message firmware-sim had
// acknowledged (PUBACK) is counted exactly once.

// persistentBroker is a mosquitto that can be stopped and started again on
// the same port, with persistence on: a clean stop writes the sessions and
// their queued QoS 1 messages to disk, and a start reads them back.
type persistentBroker struct {
	t     *testing.T
	store string
	conf  string
	log   string
	addr  string
	URL   string
	cmd   *exec.Cmd
	done  chan struct{}
}

func newPersistentBroker(t *testing.T, dir string) *persistentBroker {
	t.Helper()
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(testenv.MosquittoConf, port)
	if !strings.Contains(conf, "persistence false\n") {
		t.Fatalf("testenv.MosquittoConf changed; this test replaces its persistence line:\n%s", conf)
	}
	store := filepath.Join(dir, "mosquitto-store") + "/"
	if err := os.MkdirAll(store, 0o700); err != nil {
		t.Fatal(err)
	}
	conf = strings.Replace(conf, "persistence false\n", "persistence true\npersistence_location "+store+"\n", 1)
	if os.Geteuid() == 0 {
		// Started as root, mosquitto runs as user mosquitto, which cannot
		// write its database into the test's private directory.
		conf += "user root\n"
	}
	b := &persistentBroker{t: t, store: store, conf: filepath.Join(dir, "mosquitto-persistent.conf"), log: filepath.Join(dir, "mosquitto.log"),
		addr: fmt.Sprintf("127.0.0.1:%d", port), URL: fmt.Sprintf("tcp://127.0.0.1:%d", port)}
	if err := os.WriteFile(b.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.stop)
	t.Cleanup(func() {
		if t.Failed() {
			log, _ := os.ReadFile(b.log)
			t.Logf("mosquitto log:\n%s", log)
		}
	})
	return b
}

// start runs mosquitto and returns once it accepts connections.
func (b *persistentBroker) start() {
	b.t.Helper()
	bin, err := testenv.MosquittoPath()
	if err != nil {
		b.t.Fatal(err)
	}
	logf, err := os.OpenFile(b.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		b.t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", b.conf)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		b.t.Fatalf("start mosquitto: %v", err)
	}
	b.cmd, b.done = cmd, make(chan struct{})
	done := b.done
	go func() { cmd.Wait(); logf.Close(); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", b.addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-done:
			b.t.Fatalf("mosquitto exited at start (log: %s)", b.log)
		default:
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("mosquitto not listening on %s after 10s: %v", b.addr, err)
		}
		time.Sleep(20 * time.Millisecond) // polling a port: there is no event to wait for
	}
}

// stop ends mosquitto cleanly (SIGINT), which saves its state, and waits.
func (b *persistentBroker) stop() {
	if b.cmd == nil {
		return
	}
	b.cmd.Process.Signal(os.Interrupt)
	select {
	case <-b.done:
	case <-time.After(10 * time.Second):
		b.t.Errorf("mosquitto did not stop within 10s of SIGINT")
		b.cmd.Process.Kill()
		<-b.done
	}
	b.cmd = nil
	// Without its database the broker forgets the agent's session and what
	// it queued for it: the test would prove nothing.
	if log, _ := os.ReadFile(b.log); strings.Contains(string(log), "Error saving") {
		b.t.Errorf("mosquitto could not save its database (log: %s)", b.log)
	}
	if _, err := os.Stat(filepath.Join(b.store, "mosquitto.db")); err != nil {
		b.t.Errorf("mosquitto saved no database: %v", err)
	}
}

// perMessageConfig has one output per message (a rule without window)
// carrying the message's ts, which names it (one device, ts 1 ms apart):
// upstream can be checked message by message.
const perMessageConfig = `gateway: gw-test
data_dir: %s
api: {listen: %q}
inputs:
  - name: telemetry
    mqtt:
      url: %s
      client_id: sluice-resilience
      topics: [sensors/+/telemetry]
      qos: 1
rules:
  - name: each
    from: telemetry
    select: {ts: ts, n: 1}
uplinks:
  - name: cloud
    nats:
      url: %s
      subject: telemetry.{gateway}.{rule}
`

// brokerRig is the rig of e2e_test.go around a persistentBroker, with the
// agent's API on a known port.
type brokerRig struct {
	*rig
	broker *persistentBroker
	stream jetstream.Stream
	api    string
}

func newBrokerRig(t *testing.T) *brokerRig {
	t.Helper()
	r, stream := newUpstreamRig(t)
	broker := newPersistentBroker(t, r.dir)
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	apiAddr := fmt.Sprintf("127.0.0.1:%d", port)
	cfg := fmt.Sprintf(perMessageConfig, filepath.Join(r.dir, "data"), apiAddr, broker.URL, r.nc.ConnectedUrl())
	if err := os.WriteFile(r.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return &brokerRig{rig: r, broker: broker, stream: stream, api: apiAddr}
}

// newUpstreamRig is a rig without MQTT broker: JetStream with a collector,
// the agent's log shown when the test fails. The test writes the config to
// r.config.
func newUpstreamRig(t *testing.T) (*rig, jetstream.Stream) {
	t.Helper()
	dir := t.TempDir()
	ns, err := testenv.StartNATS(filepath.Join(dir, "js"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx := context.Background()
	stream, err := testenv.CreateStream(ctx, nc, "TELEMETRY", "telemetry.>")
	if err != nil {
		t.Fatal(err)
	}
	col, err := testenv.Collect(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(col.Stop)
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "agent.log"))
			if keep := os.Getenv("SLUICE_KEEP_LOG"); keep != "" {
				os.WriteFile(keep, b, 0o644)
			}
			if len(b) > 8000 {
				b = b[len(b)-8000:]
			}
			t.Logf("agent log (tail):\n%s", b)
		}
	})
	return &rig{t: t, dir: dir, nc: nc, collector: col, config: filepath.Join(dir, "sluice.yaml")}, stream
}

// status reads the agent's /api/v1/status.
func (r *brokerRig) status() api.Status {
	r.t.Helper()
	resp, err := http.Get("http://" + r.api + "/api/v1/status")
	if err != nil {
		r.t.Fatalf("status API: %v", err)
	}
	defer resp.Body.Close()
	var st api.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		r.t.Fatalf("status API: %v", err)
	}
	if len(st.Inputs) != 1 {
		r.t.Fatalf("status API: %d inputs, want 1", len(st.Inputs))
	}
	return st
}

// sim is a running firmware-sim.
type sim struct {
	cmd     *exec.Cmd
	lines   *testenv.LineWaiter
	acked   string // --acked-out
	summary string // --summary-json
	done    chan struct{}
	output  *strings.Builder
	mu      sync.Mutex
}

// simRate is firmware-sim's rate in the tests: with one device and message
// times from 0 (--start-ts-ms 0), message k has ts k ms exactly, so its ts
// names it.
const simRate = 1000

// startSim runs firmware-sim at QoS 1: count messages of one device at
// simRate.
func (r *brokerRig) startSim(count int) *sim {
	r.t.Helper()
	s := &sim{acked: filepath.Join(r.dir, "acked.txt"), summary: filepath.Join(r.dir, "sim-summary.json"),
		done: make(chan struct{}), output: &strings.Builder{}}
	s.cmd = exec.Command(simBinary(r.t), "--broker", r.broker.URL, "--qos", "1", "--devices", "1",
		"--rate", strconv.Itoa(simRate), "--count", strconv.Itoa(count), "--start-ts-ms", "0", "--cmd-topic", "",
		"--client-id", "sim-resilience", "--quiet", "--acked-out", s.acked, "--summary-json", s.summary)
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		r.t.Fatal(err)
	}
	s.lines = testenv.WatchLines(stderr, func(l string) { s.mu.Lock(); s.output.WriteString(l + "\n"); s.mu.Unlock() })
	if err := s.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	go func() { s.cmd.Wait(); close(s.done) }()
	r.t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			s.cmd.Process.Kill()
			<-s.done
		}
		if r.t.Failed() {
			s.mu.Lock()
			r.t.Logf("firmware-sim output:\n%s", s.output.String())
			s.mu.Unlock()
		}
	})
	return s
}

// simSummary is the part of firmware-sim's --summary-json the tests read.
type simSummary struct {
	Sent, Acked, Errors uint64
	FirstError          string `json:"first_error"`
}

// wait waits for firmware-sim to exit and returns its summary and the ts of
// the messages it had acknowledged.
func (s *sim) wait(t *testing.T, timeout time.Duration) (simSummary, map[int64]bool) {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(timeout):
		t.Fatalf("firmware-sim still running after %s", timeout)
	}
	var sum simSummary
	b, err := os.ReadFile(s.summary)
	if err != nil {
		t.Fatalf("firmware-sim summary: %v", err)
	}
	if err := json.Unmarshal(b, &sum); err != nil {
		t.Fatalf("firmware-sim summary: %v", err)
	}
	f, err := os.Open(s.acked)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	acked := map[int64]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		dev, v, _ := strings.Cut(sc.Text(), " ")
		ts, err := strconv.ParseInt(v, 10, 64)
		if dev != "dev-0" || err != nil {
			t.Fatalf("firmware-sim --acked-out line %q", sc.Text())
		}
		if acked[ts] {
			t.Fatalf("firmware-sim acknowledged ts %d twice", ts)
		}
		acked[ts] = true
	}
	if uint64(len(acked)) != sum.Acked {
		t.Fatalf("firmware-sim listed %d acknowledged messages, its summary says %d", len(acked), sum.Acked)
	}
	return sum, acked
}

// upstream returns how often each message (by ts) was counted.
func (r *brokerRig) upstream() map[int64]int {
	envs, _, bad := r.collector.Snapshot()
	if bad != 0 {
		r.t.Errorf("%d upstream messages were not valid JSON", bad)
	}
	seen := map[int64]int{}
	for _, e := range envs {
		seen[int64(e.Values["ts"])]++
	}
	return seen
}

// waitAll waits until every acknowledged message is upstream. Upstream may
// also hold messages firmware-sim never saw acknowledged (the broker stored
// them but its PUBACK was lost with the connection), so it waits for the
// acknowledged ones by name, not for a count.
func (r *brokerRig) waitAll(acked map[int64]bool, timeout time.Duration) {
	r.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		seen := r.upstream()
		missing := 0
		for m := range acked {
			if seen[m] == 0 {
				missing++
			}
		}
		if missing == 0 {
			return
		}
		left := time.Until(deadline)
		if left <= 0 {
			r.t.Fatalf("%d of %d acknowledged messages never arrived upstream", missing, len(acked))
		}
		// Wake at the next upstream message (or at the deadline).
		r.collector.WaitSum("n", r.collector.SumValue("n")+1, left)
	}
}

// drain stops the agent (SIGTERM delivers what it committed) and waits
// until the collector read the whole stream.
func drain(r *rig, stream jetstream.Stream) {
	t := r.t
	t.Helper()
	r.agent.stop(t)
	info, err := stream.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.collector.WaitSum("n", float64(info.State.Msgs), 20*time.Second); err != nil {
		t.Fatalf("collector: %v", err)
	}
}

// drainAndCheck drains and checks that every
// acknowledged message was counted exactly once, and no message twice.
func (r *brokerRig) drainAndCheck(sum simSummary, acked map[int64]bool) {
	t := r.t
	t.Helper()
	drain(r.rig, r.stream)
	seen := r.upstream()
	var total, extra int
	for m, n := range seen {
		total += n
		if n > 1 {
			t.Errorf("message ts=%d counted %d times", m, n)
		}
		if !acked[m] {
			extra++
		}
	}
	for m := range acked {
		if seen[m] != 1 {
			t.Errorf("acknowledged message ts=%d counted %d times, want 1", m, seen[m])
		}
	}
	// Messages counted that firmware-sim did not see acknowledged must be
	// among those it sent and saw fail.
	if uint64(extra) > sum.Errors {
		t.Errorf("%d messages upstream were neither acknowledged nor failed at the publisher (%d errors)", extra, sum.Errors)
	}
	t.Logf("firmware-sim sent %d, acknowledged %d, failed %d (%s); upstream %d messages, %d of them unacknowledged at the publisher",
		sum.Sent, sum.Acked, sum.Errors, sum.FirstError, total, extra)
}

// TestBrokerRestartUnderLoad stops mosquitto while firmware-sim publishes
// QoS 1 and starts it again: the agent and firmware-sim reconnect by
// themselves, the broker's persisted queue for the agent's session is
// delivered, and every acknowledged message is counted exactly once.
func TestBrokerRestartUnderLoad(t *testing.T) {
	r := newBrokerRig(t)
	r.broker.start()
	agent := r.startAgent()
	const count = 10000
	s := r.startSim(count)
	if _, err := r.collector.WaitSum("n", 2000, 20*time.Second); err != nil {
		t.Fatalf("before the restart: %v", err)
	}
	r.broker.stop()
	if err := agent.lines.Wait("mqtt connection lost", 10*time.Second); err != nil {
		t.Fatalf("agent: %v", err)
	}
	if err := s.lines.Wait("lost", 10*time.Second); err != nil {
		t.Fatalf("firmware-sim: %v", err)
	}
	if st := r.status(); st.Inputs[0].Connected {
		t.Errorf("status says the input is connected while the broker is down")
	}
	r.broker.start()
	if err := agent.lines.Wait("mqtt subscribed", 30*time.Second); err != nil {
		t.Fatalf("agent did not subscribe again after the broker restart: %v", err)
	}
	sum, acked := s.wait(t, 40*time.Second)
	if sum.Acked == 0 || sum.Acked+sum.Errors != count {
		t.Fatalf("firmware-sim: %+v", sum)
	}
	// firmware-sim reconnected too: its last message was acknowledged.
	if !acked[count-1] {
		t.Errorf("firmware-sim's last message was not acknowledged: it did not reconnect")
	}
	if sum.Errors == 0 {
		t.Errorf("firmware-sim saw no failure: was the broker down at all?")
	}
	r.waitAll(acked, 30*time.Second)
	st := r.status()
	if in := st.Inputs[0]; !in.Connected || !in.Subscribed || in.Connects != 2 {
		t.Errorf("input status after the restart: %+v (want connected, subscribed, 2 connects)", in)
	}
	r.drainAndCheck(sum, acked)
}

// TestBrokerDownAtAgentStart starts the agent while mosquitto is down (its
// session exists from an earlier run), then firmware-sim, then mosquitto:
// the agent connects once the broker is up and every message firmware-sim
// had acknowledged is counted exactly once.
func TestBrokerDownAtAgentStart(t *testing.T) {
	r := newBrokerRig(t)
	// An earlier run creates the agent's persistent session.
	r.broker.start()
	r.startAgent().stop(t)
	r.broker.stop()

	r.startAgentUntil("api listening")
	st := r.status()
	if in := st.Inputs[0]; in.Connected || in.Subscribed || st.Ready {
		t.Fatalf("status with the broker down: ready=%v input %+v", st.Ready, in)
	}
	if os.Getenv("GOMAXPROCS") == "" && runtime.NumCPU() > 1 && st.Runtime.Procs != 1 {
		t.Errorf("runtime.procs %d: an idle agent runs on one P (limits.procs 0)", st.Runtime.Procs)
	}
	const count = 5000
	s := r.startSim(count) // it retries its connection for 10s
	r.broker.start()
	if err := r.agent.lines.Wait("sluice ready", 30*time.Second); err != nil {
		t.Fatalf("agent did not become ready once the broker was up: %v", err)
	}
	sum, acked := s.wait(t, 40*time.Second)
	if sum.Acked != count || sum.Errors != 0 {
		t.Fatalf("firmware-sim: %+v", sum)
	}
	r.waitAll(acked, 30*time.Second)
	r.drainAndCheck(sum, acked)
}
