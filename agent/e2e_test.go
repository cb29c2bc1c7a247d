package main

import (
	"context"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats.go"

	"github.com/sluiceio/sluice/internal/testenv"
)

// builtBinary is a binary of this repository built once per test run.
type builtBinary struct {
	pkg, name string
	once      sync.Once
	path      string
	err       error
}

func (b *builtBinary) get(t *testing.T) string {
	t.Helper()
	b.once.Do(func() {
		dir, err := os.MkdirTemp("", "sluice-test-bin-")
		if err != nil {
			b.err = err
			return
		}
		b.path, b.err = testenv.Build(context.Background(), dir, b.pkg, b.name)
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

var (
	agentBuild = builtBinary{pkg: "./agent", name: "sluice"}
	simBuild   = builtBinary{pkg: "./firmware-sim", name: "firmware-sim"}
)

// sluiceBinary builds the agent once per test run.
func sluiceBinary(t *testing.T) string { return agentBuild.get(t) }

// simBinary builds firmware-sim once per test run.
func simBinary(t *testing.T) string { return simBuild.get(t) }

// rig is one end-to-end setup: mosquitto, JetStream, and an agent config.
type rig struct {
	t         *testing.T
	dir       string
	broker    *testenv.Mosquitto
	nc        *nats.Conn
	collector *testenv.Collector
	config    string
	agent     *agentProc
	env       []string // extra environment for the agent
}

const e2eConfig = `gateway: gw-test
data_dir: %s
tags: {site: test}
api: {listen: "127.0.0.1:0"}
inputs:
  - name: telemetry
    mqtt:
      url: %s
      client_id: sluice-e2e
      topics: [sensors/+/telemetry]
      qos: 1
rules:
  - name: temp_1s
    from: telemetry
    group_by: [device]
    window: {tumbling: 1s}
    select:
      avg_t: avg(temperature)
      max_t: max(temperature)
      n: count(*)
uplinks:
  - name: cloud
    nats:
      url: %s
      subject: telemetry.{gateway}.{rule}
`

func newRig(t *testing.T) *rig { t.Helper(); return newRigWithData(t, "") }

// newRigWithData is newRig with the agent's data dir at dataDir.
func newRigWithData(t *testing.T, dataDir string) *rig {
	t.Helper()
	r, _ := newUpstreamRig(t)
	if dataDir == "" {
		dataDir = filepath.Join(r.dir, "data")
	}
	broker, err := testenv.StartMosquitto(r.dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(broker.Stop)
	r.broker = broker
	if err := os.WriteFile(r.config, []byte(fmt.Sprintf(e2eConfig, dataDir, broker.URL, r.nc.ConnectedUrl())), 0o600); err != nil {
		t.Fatal(err)
	}
	return r
}

// agentProc is a running agent child process.
type agentProc struct {
	cmd   *exec.Cmd
	done  chan struct{}
	lines *testenv.LineWaiter
}

// startAgent runs the agent and waits until its MQTT input subscribed.
func (r *rig) startAgent() *agentProc { r.t.Helper(); return r.startAgentUntil("mqtt subscribed") }

// startLogAgent runs the agent and waits until it is ready.
func (r *rig) startLogAgent() *agentProc { r.t.Helper(); return r.startAgentUntil("sluice ready") }

// startAgentUntil runs the agent and waits for a line of its log.
func (r *rig) startAgentUntil(line string) *agentProc {
	r.t.Helper()
	cmd := exec.Command(sluiceBinary(r.t), "run", "--config", r.config)
	cmd.Env = append(os.Environ(), r.env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		r.t.Fatal(err)
	}
	logf, err := os.OpenFile(filepath.Join(r.dir, "agent.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		r.t.Fatal(err)
	}
	var mu sync.Mutex
	lines := testenv.WatchLines(stderr, func(l string) { mu.Lock(); fmt.Fprintln(logf, l); mu.Unlock() })
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	p := &agentProc{cmd: cmd, done: make(chan struct{}), lines: lines}
	go func() { cmd.Wait(); logf.Close(); close(p.done) }()
	r.t.Cleanup(func() { p.stop(r.t) })
	r.agent = p
	if err := lines.Wait(line, 15*time.Second); err != nil {
		r.t.Fatalf("agent: %v (log: %s)", err, filepath.Join(r.dir, "agent.log"))
	}
	return p
}

func (p *agentProc) stop(t *testing.T) {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		t.Errorf("agent did not stop within 15s of SIGTERM")
		p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *agentProc) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.done
	if ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("agent was not killed by SIGKILL: %v", p.cmd.ProcessState)
	}
}

// fleet is what the test publishes: n messages from devices, with the values
// known so that upstream summaries can be checked exactly.
type fleet struct {
	devices int
	sum     map[string]float64
	max     map[string]float64
	count   map[string]int
}

func temperature(i int) float64 { return float64((i*37)%900)/10 - 20 } // -20.0 … 69.9

// publish sends n QoS 1 messages round-robin over devices, at most rate per
// second when rate > 0, and returns when every PUBACK arrived. progress is
// called with the number sent so far.
func publish(t *testing.T, url string, devices, n int, rate float64, progress func(int)) *fleet {
	t.Helper()
	f, err := tryPublish(url, 1, devices, n, rate, progress)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// tryPublish is publish for goroutines other than the test's, which must
// not call t.Fatal: it returns the error instead.
func tryPublish(url string, qos byte, devices, n int, rate float64, progress func(int)) (*fleet, error) {
	o := mqtt.NewClientOptions().AddBroker(url).SetClientID(fmt.Sprintf("e2e-pub-%d", time.Now().UnixNano())).SetAutoReconnect(true)
	c := mqtt.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		return nil, fmt.Errorf("publisher connect: %v", tok.Error())
	}
	defer c.Disconnect(100)
	f := &fleet{devices: devices, sum: map[string]float64{}, max: map[string]float64{}, count: map[string]int{}}
	start := time.Now()
	var tokens []mqtt.Token
	for i := 0; i < n; i++ {
		if rate > 0 {
			if due := start.Add(time.Duration(float64(i) / rate * float64(time.Second))); time.Until(due) > 0 {
				time.Sleep(time.Until(due)) // pacing the publisher, not synchronising
			}
		}
		dev := fmt.Sprintf("dev-%d", i%devices)
		v := temperature(i)
		payload := fmt.Sprintf(`{"device":%q,"temperature":%.1f,"humidity":41.2,"ts":%d}`, dev, v, time.Now().UnixMilli())
		tokens = append(tokens, c.Publish("sensors/"+dev+"/telemetry", qos, false, payload))
		f.sum[dev] += v
		if f.count[dev] == 0 || v > f.max[dev] {
			f.max[dev] = v
		}
		f.count[dev]++
		if progress != nil {
			progress(i + 1)
		}
	}
	for i, tok := range tokens {
		if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
			return nil, fmt.Errorf("publish %d not acked: %v", i, tok.Error())
		}
	}
	return f, nil
}

// check compares the upstream summaries with what was sent: every count, the
// average and maximum of every device, and unique seqs with matching
// Nats-Msg-Id headers.
func (r *rig) check(f *fleet, total int) {
	t := r.t
	t.Helper()
	envs, ids, bad := r.collector.Snapshot()
	if bad != 0 {
		t.Errorf("%d upstream messages were not valid JSON", bad)
	}
	seqs := map[uint64]bool{}
	n := map[string]float64{}
	sum := map[string]float64{}
	max := map[string]float64{}
	for i, e := range envs {
		if seqs[e.Seq] {
			t.Errorf("seq %d appears twice in the stream", e.Seq)
		}
		seqs[e.Seq] = true
		if want := fmt.Sprintf("gw-test-%d", e.Seq); ids[i] != want {
			t.Errorf("Nats-Msg-Id %q, want %q", ids[i], want)
		}
		if e.Gateway != "gw-test" || e.Rule != "temp_1s" || e.Tags["site"] != "test" || e.Window == nil {
			t.Errorf("envelope fields: %+v", e)
		}
		dev, _ := e.Key["device"].(string)
		n[dev] += e.Values["n"]
		sum[dev] += e.Values["avg_t"] * e.Values["n"]
		if m, ok := max[dev]; !ok || e.Values["max_t"] > m {
			max[dev] = e.Values["max_t"]
		}
	}
	var counted float64
	for _, c := range n {
		counted += c
	}
	if counted != float64(total) {
		t.Errorf("upstream counted %v messages, want exactly %d", counted, total)
	}
	if len(n) != f.devices {
		t.Errorf("upstream has %d devices, want %d", len(n), f.devices)
	}
	for dev, c := range f.count {
		if n[dev] != float64(c) {
			t.Errorf("%s: counted %v, sent %d", dev, n[dev], c)
			continue
		}
		wantAvg, gotAvg := f.sum[dev]/float64(c), sum[dev]/n[dev]
		if math.Abs(gotAvg-wantAvg) > 1e-9*math.Max(1, math.Abs(wantAvg)) {
			t.Errorf("%s: average %v, want %v", dev, gotAvg, wantAvg)
		}
		if max[dev] != f.max[dev] {
			t.Errorf("%s: max %v, want %v", dev, max[dev], f.max[dev])
		}
	}
}

func TestEndToEndCountsAndAverages(t *testing.T) {
	r := newRig(t)
	r.env = append(r.env, "SLUICE_KEEP_EXE_PAGES=") // whatever the tester's environment says
	// Once subscribed, the agent unmaps the start-up pages of its binary;
	// the exact counts below are then made by an agent that maps back what
	// it runs.
	r.startAgentUntil("start-up pages released")
	checkReleased(t, filepath.Join(r.dir, "agent.log"))
	f := publish(t, r.broker.URL, 50, 10000, 0, nil)
	if got, err := r.collector.WaitSum("n", 10000, 20*time.Second); err != nil {
		if os.Getenv("SLUICE_DEBUG") != "" {
			r.agent.cmd.Process.Signal(syscall.SIGTERM)
			<-r.agent.done
			b, _ := os.ReadFile(filepath.Join(r.dir, "agent.log"))
			os.WriteFile("/tmp/agent-dump.log", b, 0o644)
			envs, _, bad := r.collector.Snapshot()
			for _, e := range envs {
				t.Logf("%d %v %v", e.Seq, e.Key, e.Values)
			}
			t.Logf("envs %d bad %d", len(envs), bad)
		}
		t.Fatalf("%v (got %v)", err, got)
	}
	r.check(f, 10000)
}

// checkReleased reads the agent's "start-up pages released" line: most of
// the agent's RSS was its binary's pages, and the release must leave it at
// less than half.
func checkReleased(t *testing.T, log string) {
	t.Helper()
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`start-up pages released" mappings=(\d+) skipped=(\d+) rss_before_kib=(\d+) rss_after_kib=(\d+)`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no start-up pages released line in %s", log)
	}
	var n [4]int
	for i := range n {
		n[i], _ = strconv.Atoi(string(m[i+1]))
	}
	mappings, skipped, before, after := n[0], n[1], n[2], n[3]
	// A PIE build (GOFLAGS=-buildmode=pie) skips its relocated data.
	if mappings != 2 || skipped > 1 || after > before/2 {
		t.Errorf("released %d mappings (%d skipped), RSS %d → %d KiB; want 2 (text; rodata and pclntab), at most 1 skipped and less than half", mappings, skipped, before, after)
	}
}

// TestEndToEndQoS0CountsAndAverages is the same count at QoS 0, the load of
// W1: the agent reads those messages itself rather than through paho
// (ingest/qos0.go), and hands them to the pipeline a socket read at a time.
func TestEndToEndQoS0CountsAndAverages(t *testing.T) {
	r := newRig(t)
	r.startAgent()
	f, err := tryPublish(r.broker.URL, 0, 50, 10000, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := r.collector.WaitSum("n", 10000, 20*time.Second); err != nil {
		t.Fatalf("%v (got %v)", err, got)
	}
	r.check(f, 10000)
}

func TestSIGKILLMidStreamLosesAndDoublesNothing(t *testing.T) {
	r := newRig(t)
	agent := r.startAgent()
	killAt := make(chan struct{})
	var once sync.Once
	var f *fleet
	published := make(chan struct{})
	var pubErr error
	go func() {
		defer close(published)
		f, pubErr = tryPublish(r.broker.URL, 1, 50, 10000, 2500, func(sent int) {
			if sent == 4000 {
				once.Do(func() { close(killAt) })
			}
		})
	}()
	<-killAt
	if got, err := r.collector.WaitSum("n", 1, 10*time.Second); err != nil {
		t.Fatalf("no upstream output before the kill: %v (%v)", err, got)
	}
	agent.kill(t)
	r.startAgent() // same data dir, same client id: the broker redelivers
	<-published
	if pubErr != nil {
		t.Fatal(pubErr)
	}
	if got, err := r.collector.WaitSum("n", 10000, 60*time.Second); err != nil {
		t.Fatalf("%v (got %v)", err, got)
	}
	// A double count would come from a redelivery processed twice, right
	// after the restart; give the last windows (1s) time to show one.
	time.Sleep(2500 * time.Millisecond)
	r.check(f, 10000)
	// Read back in stream order, the outputs are in seq order.
	envs, _, _ := r.collector.Snapshot()
	for i := 1; i < len(envs); i++ {
		if envs[i].Seq <= envs[i-1].Seq {
			t.Fatalf("stream position %d has seq %d after %d", i, envs[i].Seq, envs[i-1].Seq)
		}
	}
	r.agent.stop(t)
	b, err := os.ReadFile(filepath.Join(r.dir, "agent.log"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "totals") {
			t.Log(l)
		}
	}
}

// TestDamagedBufferFileAgentKeepsRunning starts the agent on a buffer file
// full of garbage: it moves the file aside, says so, and works.
func TestDamagedBufferFileAgentKeepsRunning(t *testing.T) {
	r := newRig(t)
	data := filepath.Join(r.dir, "data")
	os.MkdirAll(data, 0o700)
	garbage := make([]byte, 64<<10)
	for i := range garbage {
		garbage[i] = byte(i * 7)
	}
	os.WriteFile(filepath.Join(data, "buffer.db"), garbage, 0o600)
	r.startAgent()
	f := publish(t, r.broker.URL, 5, 500, 0, nil)
	if got, err := r.collector.WaitSum("n", 500, 30*time.Second); err != nil {
		t.Fatalf("%v (got %v)", err, got)
	}
	r.check(f, 500)
	b, _ := os.ReadFile(filepath.Join(r.dir, "agent.log"))
	if !strings.Contains(string(b), "buffer file is damaged; moved aside") {
		t.Errorf("the agent did not say the buffer was damaged")
	}
	aside, _ := filepath.Glob(filepath.Join(data, "buffer.db.corrupt-*"))
	if len(aside) != 1 {
		t.Errorf("moved-aside files: %v", aside)
	}
}

// TestDiskFullAgentHoldsInputsAndRecovers runs the agent with its data dir
// on a tiny tmpfs that is then filled: commits fail, nothing is acked or
// lost, and once space is freed every message is counted exactly once.
func TestDiskFullAgentHoldsInputsAndRecovers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test mounts a tmpfs and needs root (CI runs as root)")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", mnt).Run() })
	r := newRigWithData(t, filepath.Join(mnt, "data"))
	agent := r.startAgent()
	f := publish(t, r.broker.URL, 10, 1000, 0, nil)
	if got, err := r.collector.WaitSum("n", 1000, 30*time.Second); err != nil {
		t.Fatalf("%v (got %v)", err, got)
	}
	// Fill the disk, then send more.
	filler := filepath.Join(mnt, "filler")
	fill, _ := os.Create(filler)
	fill.Write(make([]byte, 4<<20)) // fails at ENOSPC: that is the point
	fill.Close()
	type result struct {
		f   *fleet
		err error
	}
	done := make(chan result)
	go func() { f, err := tryPublish(r.broker.URL, 1, 10, 1000, 0, nil); done <- result{f, err} }()
	if err := agent.lines.Wait("commit failed", 30*time.Second); err != nil {
		t.Fatalf("no commit failure reported on a full disk: %v", err)
	}
	os.Remove(filler)
	res := <-done
	if res.err != nil {
		t.Fatal(res.err)
	}
	f2 := res.f
	for dev, n := range f2.count {
		f.count[dev] += n
		f.sum[dev] += f2.sum[dev]
		if f2.max[dev] > f.max[dev] {
			f.max[dev] = f2.max[dev]
		}
	}
	if got, err := r.collector.WaitSum("n", 2000, 60*time.Second); err != nil {
		t.Fatalf("after space was freed: %v (got %v)", err, got)
	}
	time.Sleep(2500 * time.Millisecond) // a double count would show within two windows
	r.check(f, 2000)
}

// TestSystemdNotify runs the agent under a fake notify socket, as systemd
// with Type=notify and WatchdogSec would: READY=1 once the input subscribed,
// then WATCHDOG=1 at half the watchdog interval, STOPPING=1 at the end.
func TestSystemdNotify(t *testing.T) {
	r := newRig(t)
	sock := filepath.Join(r.dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r.env = []string{"NOTIFY_SOCKET=" + sock, "WATCHDOG_USEC=200000"}
	msgs := make(chan string, 100)
	go func() {
		buf := make([]byte, 256)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	agent := r.startAgent()
	next := func(want string) {
		t.Helper()
		select {
		case got := <-msgs:
			if got != want {
				t.Fatalf("notify %q, want %q", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no %q within 10s", want)
		}
	}
	next("READY=1")
	next("WATCHDOG=1")
	next("WATCHDOG=1")
	agent.stop(t)
	// The agent has exited: everything it sent is queued on the socket.
	for {
		select {
		case m := <-msgs:
			if m == "STOPPING=1" {
				return
			}
		case <-time.After(time.Second):
			t.Fatal("no STOPPING=1 at shutdown")
		}
	}
}
