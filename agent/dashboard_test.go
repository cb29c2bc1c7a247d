package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/sluiceio/sluice/agent/api"
	"github.com/sluiceio/sluice/agent/config"
	"github.com/sluiceio/sluice/agent/ingest"
	"github.com/sluiceio/sluice/agent/pipeline"
	"github.com/sluiceio/sluice/buffer"
	"github.com/sluiceio/sluice/internal/testenv"
	"github.com/sluiceio/sluice/rules"
)

// Load of the dashboard run: good messages from 4 devices with temperatures
// 0..39, then bad ones; the rules make exact numbers of outputs from them.
const (
	dashGood    = 200
	dashBad     = 10
	dashDevices = 4
	dashHot     = 50 // temperatures >= 30: 10 of every 40
	dashPer10   = 20 // one output per 10 messages of a device
)

// recordingUplink acknowledges every batch at once and hands the entries to
// the API server as committed outputs (until the pipeline has its OnCommit
// hook, this is how the last outputs reach the server here).
type recordingUplink struct {
	srv *api.Server
}

func (u *recordingUplink) Name() string { return "memory" }
func (u *recordingUplink) Close() error { return nil }

func (u *recordingUplink) Deliver(_ context.Context, batch []buffer.Entry) error {
	u.srv.Committed(batch, time.Time{}, 0)
	return nil
}

// dashboardRun is an agent wired as runAgent wires it, plus the API server.
type dashboardRun struct {
	url    string // the API server's base URL
	status *agentStatus
}

// startDashboardRun runs mosquitto, an MQTT input, two rules, the
// buffer, a forwarder and the API server; publishes the load and returns
// once every output was delivered and the pipeline stopped (so the counters
// hold still while the browser reads them).
func startDashboardRun(t *testing.T) *dashboardRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	log := slog.New(slog.DiscardHandler)
	dir := t.TempDir()

	b, err := testenv.StartMosquitto(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Stop)
	url := b.URL
	cfg, err := config.Parse([]byte(fmt.Sprintf(`gateway: gw-dash
data_dir: %s
inputs:
  - name: telemetry
    mqtt: {url: %q, topics: [sensors/+/telemetry], qos: 1}
rules:
  - name: hot
    from: telemetry
    where: temperature >= 30
    select: {t: temperature}
  - name: per10
    from: telemetry
    group_by: [device]
    window: {count: {n: 10}}
    select: {avg_t: avg(temperature), max_t: max(temperature), n: count(*)}
uplinks:
  - name: memory
    nats: {url: "nats://127.0.0.1:4222"}
`, filepath.Join(dir, "data"), url)))
	if err != nil {
		t.Fatal(err)
	}
	buf, err := buffer.Open(filepath.Join(dir, "buffer.db"), buffer.Options{Uplinks: []string{"memory"}, MaxRecords: 100000, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { buf.Close() })
	cfg.Buffer.MaxRecords = 100000
	inputs := []*pipeline.Input{{Name: "telemetry"}}
	var rs []*pipeline.Rule
	for _, r := range cfg.Rules {
		plan, err := rules.Compile(r.Spec())
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, &pipeline.Rule{Plan: plan, Input: 0, To: r.To})
	}
	p := pipeline.New(buf, inputs, rs, pipeline.Options{Gateway: cfg.Gateway, CommitInterval: 5 * time.Millisecond,
		CommitMaxRecords: 100, CheckpointInterval: time.Second, Logger: log})
	if err := p.Restore(); err != nil {
		t.Fatal(err)
	}
	counters := newRuleCounters(rs)

	// The API server before the rest, as runAgent would build it.
	var st *agentStatus
	srv, err := api.New(api.SourceFunc(func() api.Status { return st.Status() }), api.WithListen("127.0.0.1:0"),
		api.WithGateway(cfg.Gateway), api.WithLogger(log), api.WithRates(100*time.Millisecond, time.Second))
	if err != nil {
		t.Fatal(err)
	}
	up := &recordingUplink{srv: srv}
	delivered := make(chan struct{})
	acked := ackHook(srv, "memory")
	onAck := func(pos buffer.Position) { // on the forwarder's goroutine
		acked(pos)
		if max(pos.Normal, pos.High) == dashHot+dashPer10 {
			close(delivered)
		}
	}
	fwd := pipeline.NewForwarder(buf, up, pipeline.WithOnAck(onAck), pipeline.WithForwarderLogger(log))
	fwdDone := make(chan error, 1)
	go func() { fwdDone <- fwd.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-fwdDone })

	pipeCtx, stopPipe := context.WithCancel(ctx)
	pipeDone := make(chan error, 1)
	go func() { pipeDone <- p.Run(pipeCtx) }()

	m := cfg.Inputs[0].MQTT
	src := ingest.NewMQTT(ingest.MQTTOptions{Input: 0, URL: m.URL, ClientID: m.ClientID, Topics: m.Topics, QoS: byte(*m.QoS),
		ReadCoalesce: *m.ReadCoalesce, Logger: log})
	if err := src.Start(ctx, p.In()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(src.Close)
	st = newAgentStatus(cfg, time.Now(), buf, p, inputs, []*ingest.MQTT{src}, counters, []*pipeline.Forwarder{fwd})
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	select {
	case <-src.Subscribed():
	case <-time.After(20 * time.Second):
		t.Fatal("the input did not subscribe within 20s")
	}

	publishDashboardLoad(t, url)
	select {
	case <-delivered:
	case <-time.After(60 * time.Second):
		t.Fatalf("outputs not delivered within 60s")
	}
	// Every good message came after the bad ones, so all were handled. Stop
	// the pipeline: the rules' counters may be copied now (the commit hook
	// does it on the pipeline's goroutine once it exists).
	stopPipe()
	if err := <-pipeDone; err != nil {
		t.Fatal(err)
	}
	counters.hook(srv)(nil, time.Time{}, 0) // what the commit hook does, here while the pipeline is stopped
	return &dashboardRun{url: "http://" + srv.Addr().String(), status: st}
}

func publishDashboardLoad(t *testing.T, url string) {
	t.Helper()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID("dash-pub"))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer c.Disconnect(50)
	var toks []mqtt.Token
	for i := 0; i < dashBad; i++ {
		toks = append(toks, c.Publish("sensors/bad/telemetry", 1, false, fmt.Sprintf(`{"device":"bad","temperature":%d`, i)))
	}
	for i := 0; i < dashGood; i++ {
		dev := fmt.Sprintf("pump-%d", i%dashDevices)
		toks = append(toks, c.Publish("sensors/"+dev+"/telemetry", 1, false, fmt.Sprintf(`{"device":%q,"temperature":%d}`, dev, i%40)))
	}
	for _, tok := range toks {
		if !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}
}

func getStatus(t *testing.T, base string) (api.Status, map[string]any) {
	t.Helper()
	resp, err := http.Get(base + "/api/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var st api.Status
	var raw map[string]any
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatal(err)
	}
	json.Unmarshal(body, &raw)
	return st, raw
}

// TestStatusFromRealAgent checks the status document and the metrics of a
// real run hold the exact counts of what was published and delivered.
func TestStatusFromRealAgent(t *testing.T) {
	run := startDashboardRun(t)
	st, _ := getStatus(t, run.url)
	in := st.Inputs[0]
	if !st.Ready || !in.Connected || !in.Subscribed || in.Received != dashGood+dashBad || in.Messages != dashGood+dashBad ||
		in.DeadLetters != dashBad || in.LastDeadLetter == nil || in.LastDeadLetter.Topic != "sensors/bad/telemetry" {
		t.Fatalf("input %+v ready %v", in, st.Ready)
	}
	want := []api.Rule{
		{Name: "hot", Processed: dashGood, Filtered: dashGood - dashHot, Emitted: dashHot},
		{Name: "per10", Processed: dashGood, Emitted: dashPer10},
	}
	for i, w := range want {
		got := st.Rules[i]
		got.InRate, got.OutRate = 0, 0
		if got != w {
			t.Errorf("rule %+v, want %+v", got, w)
		}
	}
	u := st.Uplinks[0]
	if u.Name != "memory" || u.State != "connected" || !u.Connected || u.Delivered != dashHot+dashPer10 || u.Lag != 0 {
		t.Errorf("uplink %+v", u)
	}
	if st.Pipeline.Outputs != dashHot+dashPer10 || st.Buffer.LastSeq != dashHot+dashPer10 || !st.Buffer.Open ||
		st.Buffer.Committed != dashHot+dashPer10 || st.Buffer.MaxRecords != 100000 {
		t.Errorf("pipeline %+v buffer %+v", st.Pipeline, st.Buffer)
	}

	resp, err := http.Get(run.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, line := range []string{
		`sluice_input_received_total{input="telemetry"} 210`,
		`sluice_input_dead_letters_total{input="telemetry"} 10`,
		`sluice_rule_emitted_total{rule="hot"} 50`,
		`sluice_rule_filtered_total{rule="hot"} 150`,
		`sluice_rule_emitted_total{rule="per10"} 20`,
		`sluice_uplink_delivered_total{uplink="memory"} 70`,
		`sluice_uplink_up{uplink="memory"} 1`,
		`sluice_pipeline_outputs_total 70`,
		`sluice_ready 1`,
	} {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(line) + `$`).Match(body) {
			t.Errorf("/metrics lacks %q", line)
		}
	}
}

// chromium returns the browser's path, failing the test with how to install
// it when it is missing.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("chromium is not installed: the dashboard test needs it (Debian: apt-get install -y chromium)")
	return ""
}

func runChromium(t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
		"--user-data-dir=" + t.TempDir()}
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	var stderr limitedBuffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, stderr.String())
	}
	return out
}

// limitedBuffer keeps the first 8 KiB written to it.
type limitedBuffer struct{ b []byte }

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := 8192 - len(l.b); room > 0 {
		l.b = append(l.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}
func (l *limitedBuffer) String() string { return string(l.b) }

// artifactDir is where tests leave files for people: $SLUICE_ARTIFACTS when
// set, else the test's temporary directory.
func artifactDir(t *testing.T) string {
	if d := os.Getenv("SLUICE_ARTIFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

var domValue = regexp.MustCompile(`data-k="([^"]+)" data-v="([^"]*)"`)

// TestDashboardInBrowser opens the dashboard of a real run in headless
// Chromium, lets its script poll the API, and checks the numbers on the page
// are those of /api/v1/status; it saves a screenshot as dashboard.png in the
// artifact directory.
func TestDashboardInBrowser(t *testing.T) {
	bin := chromium(t)
	run := startDashboardRun(t)
	st, _ := getStatus(t, run.url)

	// Virtual time runs the page's timers (1 s polls) without waiting for
	// them; the budget ends when the polls had time for several rounds.
	dom := string(runChromium(t, bin, "--virtual-time-budget=6000", "--dump-dom", run.url+"/"))
	m := regexp.MustCompile(`<body data-updates="(\d+)"`).FindStringSubmatch(dom)
	if m == nil {
		t.Fatalf("no body in the page:\n%.2000s", dom)
	}
	if n, _ := strconv.Atoi(m[1]); n < 2 {
		t.Fatalf("the page updated %d times, want live values (>= 2 polls):\n%.3000s", n, dom)
	}
	shown := map[string]string{}
	for _, kv := range domValue.FindAllStringSubmatch(dom, -1) {
		shown[kv[1]] = kv[2]
	}
	u := func(v uint64) string { return strconv.FormatUint(v, 10) }
	in, up := st.Inputs[0], st.Uplinks[0]
	want := map[string]string{
		"gateway":                       st.Gateway,
		"ready":                         "true",
		"dead_letters":                  u(in.DeadLetters),
		"buffer.records":                strconv.FormatInt(st.Buffer.Records, 10),
		"buffer.bytes":                  strconv.FormatInt(st.Buffer.Bytes, 10),
		"buffer.dropped":                u(st.Buffer.Dropped),
		"inputs.telemetry.received":     u(in.Received),
		"inputs.telemetry.messages":     u(in.Messages),
		"inputs.telemetry.dead_letters": u(in.DeadLetters),
		"inputs.telemetry.state":        "subscribed",
		"uplinks.memory.state":          up.State,
		"uplinks.memory.lag":            u(up.Lag),
		"uplinks.memory.delivered":      u(up.Delivered),
		"uplinks.memory.failures":       u(up.Failures),
		"rules.hot.processed":           u(st.Rules[0].Processed),
		"rules.hot.filtered":            u(st.Rules[0].Filtered),
		"rules.hot.emitted":             u(st.Rules[0].Emitted),
		"rules.per10.emitted":           u(st.Rules[1].Emitted),
	}
	for k, v := range want {
		if shown[k] != v {
			t.Errorf("page shows %s = %q, /api/v1/status has %q", k, shown[k], v)
		}
	}
	// The same numbers as the load itself, so page and API are both right.
	if shown["inputs.telemetry.messages"] != "210" || shown["rules.hot.emitted"] != "50" || shown["uplinks.memory.delivered"] != "70" {
		t.Errorf("page numbers differ from the load: %v", shown)
	}
	if !regexp.MustCompile(`<code>\{"gateway":"gw-dash","seq":\d+,"rule":"per10"`).MatchString(dom) {
		t.Errorf("the per10 card does not show its last output")
	}

	shot := filepath.Join(artifactDir(t), "dashboard.png")
	runChromium(t, bin, "--virtual-time-budget=6000", "--window-size=1280,1500", "--hide-scrollbars", "--screenshot="+shot, run.url+"/")
	fi, err := os.Stat(shot)
	if err != nil || fi.Size() < 10000 {
		t.Fatalf("screenshot %s: %v (size %v)", shot, err, fi)
	}
	t.Logf("dashboard screenshot: %s", shot)
}

func TestNewAPIServerFromConfig(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	status := func() api.Status { return api.Status{} }
	t.Setenv("SLUICE_TEST_API_TOKEN", "tok")
	if _, err := newAPIServer(config.API{Listen: "0.0.0.0:0", TokenEnv: "SLUICE_TEST_API_TOKEN"}, "gw", log, status); err != nil {
		t.Fatal(err)
	}
	if _, err := newAPIServer(config.API{Listen: "0.0.0.0:0"}, "gw", log, status); !errors.Is(err, api.ErrUnprotected) {
		t.Fatalf("no token on a non-loopback address: %v", err)
	}
	if _, err := newAPIServer(config.API{Listen: "0.0.0.0:0", TokenEnv: "SLUICE_TEST_API_TOKEN_UNSET"}, "gw", log, status); err == nil {
		t.Fatal("an unset token variable was accepted")
	}
	if _, err := newAPIServer(config.API{Listen: "127.0.0.1:0", TLS: &config.APITLS{CertFile: "/nonexistent.pem", KeyFile: "/nonexistent.key"}}, "gw", log, status); err == nil {
		t.Fatal("missing TLS files were accepted")
	}
	if ackHook(nil, "x") != nil || deadLetterHook(nil) != nil {
		t.Fatal("hooks without a server")
	}
	srv, _ := newAPIServer(config.API{Listen: "127.0.0.1:0"}, "gw", log, status)
	deadLetterHook(srv)("telemetry", pipeline.DeadLetter{Topic: "a", Reason: "bad", Time: time.Unix(1, 0)})
	newRuleCounters(nil).hook(nil)(nil, time.Time{}, 0)
}
