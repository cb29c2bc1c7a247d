package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluiceio/sluice/buffer"
)

// fixedSource serves a Status set by the test.
type fixedSource struct {
	mu sync.Mutex
	st Status
}

func (f *fixedSource) Status() Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.st
	st.Inputs = append([]Input(nil), f.st.Inputs...)
	st.Rules = append([]Rule(nil), f.st.Rules...)
	st.Uplinks = append([]Uplink(nil), f.st.Uplinks...)
	return st
}

func (f *fixedSource) set(fn func(*Status)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(&f.st)
}

var quiet = slog.New(slog.DiscardHandler)

var t0 = time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)

func sampleStatus() Status {
	return Status{
		Gateway: "gw-01", Version: "v1.2.3", Time: t0, Started: t0.Add(-time.Hour), Ready: true,
		Inputs: []Input{{Name: "telemetry", Connected: true, Subscribed: true, Received: 1002, Messages: 1000,
			DeadLetters: 7, Duplicates: 2, Oversized: 1, Connects: 3}},
		Rules: []Rule{{Name: "pump_temp_1m", Processed: 993, Filtered: 13, Late: 4, GroupsDropped: 5, Emitted: 20},
			{Name: "alerts", Processed: 993, Emitted: 1}},
		Uplinks: []Uplink{{Name: "cloud", State: "connected", Connected: true, Lag: 6, Delivered: 15, Failures: 2},
			{Name: "backup", State: "backoff", Lag: 21}},
		Buffer: Buffer{Open: true, Records: 21, Bytes: 4096, FileBytes: 65536, OldestAgeSeconds: 2.5, LastSeq: 21,
			MaxBytes: 1 << 28, MaxRecords: 100000, MaxAgeSeconds: 86400, Commits: 40, Committed: 21, Deleted: 0, Dropped: 3, Full: 0, Compactions: 1,
			Drops: []Drop{{Rule: "pump_temp_1m", Priority: "normal", Reason: "full", Count: 3}}},
		Pipeline: Pipeline{Commits: 40, CommitErrors: 1, Outputs: 21, CommitSeconds: 0.25, LastTick: t0},
	}
}

func newTestServer(t *testing.T, src Source, opts ...Option) (*Server, *httptest.Server) {
	t.Helper()
	s, err := New(src, append([]Option{WithGateway("gw-01"), WithLogger(quiet)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(func() { ts.Close(); s.Close() })
	return s, ts
}

func get(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestNewRefusesUnprotectedNonLoopback(t *testing.T) {
	for _, addr := range []string{":8080", "0.0.0.0:8080", "192.168.1.10:8080", "[::]:8080"} {
		_, err := New(&fixedSource{}, WithListen(addr))
		if !errors.Is(err, ErrUnprotected) {
			t.Errorf("New(%s) = %v, want ErrUnprotected", addr, err)
		}
	}
	for _, addr := range []string{"127.0.0.1:8080", "localhost:8080", "[::1]:8080"} {
		if _, err := New(&fixedSource{}, WithListen(addr)); err != nil {
			t.Errorf("New(%s) = %v", addr, err)
		}
	}
}

// TestNonLocalBindRefusesWithoutToken binds every interface with a token and
// checks every data endpoint refuses requests without it or with a wrong one,
// from loopback and, when the machine has one, from a non-loopback address.
func TestNonLocalBindRefusesWithoutToken(t *testing.T) {
	src := &fixedSource{st: sampleStatus()}
	s, err := New(src, WithLogger(quiet), WithListen("0.0.0.0:0"), WithToken("s3cret-token"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	port := s.Addr().(*net.TCPAddr).Port
	hosts := []string{"127.0.0.1"}
	if ip := nonLoopbackIP(); ip != "" {
		hosts = append(hosts, ip)
	} else {
		t.Log("no non-loopback address on this machine: checked from loopback only")
	}
	for _, host := range hosts {
		base := "http://" + net.JoinHostPort(host, strconv.Itoa(port))
		for _, path := range []string{"/metrics", "/readyz", "/api/v1/status", "/api/v1/rules", "/api/v1/deadletters", "/api/v1/stream"} {
			if code, body := get(t, base+path, ""); code != http.StatusUnauthorized || !strings.Contains(body, "unauthorized") {
				t.Errorf("%s%s without token: %d %q, want 401", host, path, code, body)
			}
			if code, _ := get(t, base+path, "s3cret-tokem"); code != http.StatusUnauthorized {
				t.Errorf("%s%s with a wrong token: %d, want 401", host, path, code)
			}
		}
		if code, body := get(t, base+"/api/v1/status", "s3cret-token"); code != 200 || !strings.Contains(body, `"gateway":"gw-01"`) {
			t.Errorf("%s status with the token: %d %q", host, code, body)
		}
		if code, body := get(t, base+"/healthz", ""); code != 200 || body != "ok\n" {
			t.Errorf("%s healthz: %d %q", host, code, body)
		}
		if code, body := get(t, base+"/", ""); code != 200 || !strings.Contains(body, `<script src="app.js">`) {
			t.Errorf("%s dashboard page: %d", host, code)
		}
	}
}

func nonLoopbackIP() string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return ""
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil && !n.IP.IsLinkLocalUnicast() {
			return n.IP.String()
		}
	}
	return ""
}

func TestLoopbackNeedsNoToken(t *testing.T) {
	src := &fixedSource{st: sampleStatus()}
	s, err := New(src, WithLogger(quiet), WithListen("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	code, body := get(t, "http://"+s.Addr().String()+"/api/v1/status", "")
	if code != 200 {
		t.Fatalf("status: %d %s", code, body)
	}
	var st Status
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	if st.Inputs[0].Messages != 1000 || st.Buffer.Records != 21 || st.Uplinks[1].State != "backoff" {
		t.Fatalf("status %+v", st)
	}
	cancel() // ctx ends: the server closes
	if err := waitClosed(s); err != nil {
		t.Fatal(err)
	}
}

// waitClosed waits for the server's done channel, closed by Close.
func waitClosed(s *Server) error {
	select {
	case <-s.done:
		return nil
	case <-time.After(5 * time.Second):
		return errors.New("server did not close within 5s of its context ending")
	}
}

func TestReadyz(t *testing.T) {
	src := &fixedSource{st: sampleStatus()}
	_, ts := newTestServer(t, src)
	if code, body := get(t, ts.URL+"/readyz", ""); code != 200 || body != "ready\n" {
		t.Fatalf("readyz: %d %q", code, body)
	}
	src.set(func(st *Status) { st.Ready = false; st.Inputs[0].Subscribed = false; st.Buffer.Open = false })
	if code, body := get(t, ts.URL+"/readyz", ""); code != 503 || body != "not ready: buffer not open, input telemetry not subscribed\n" {
		t.Fatalf("readyz: %d %q", code, body)
	}
}

func TestRates(t *testing.T) {
	src := &fixedSource{st: sampleStatus()}
	s, ts := newTestServer(t, src, WithRates(time.Second, 10*time.Second))
	first := src.Status()
	s.rates.add(&first)
	src.set(func(st *Status) {
		st.Time = t0.Add(2 * time.Second)
		st.Inputs[0].Messages += 300
		st.Rules[0].Processed += 200
		st.Rules[0].Emitted += 4
		st.Uplinks[0].Delivered += 10
		st.Pipeline.Outputs += 6
	})
	code, body := get(t, ts.URL+"/api/v1/status", "")
	if code != 200 {
		t.Fatal(code, body)
	}
	var st Status
	json.Unmarshal([]byte(body), &st)
	if st.Inputs[0].Rate != 150 || st.Rules[0].InRate != 100 || st.Rules[0].OutRate != 2 || st.Rules[1].OutRate != 0 ||
		st.Uplinks[0].Rate != 5 || st.Pipeline.OutRate != 3 {
		t.Fatalf("rates: input %v rule %v/%v %v uplink %v outputs %v", st.Inputs[0].Rate, st.Rules[0].InRate, st.Rules[0].OutRate,
			st.Rules[1].OutRate, st.Uplinks[0].Rate, st.Pipeline.OutRate)
	}
	// Samples older than the window are not used.
	src.set(func(st *Status) { st.Time = t0.Add(11 * time.Second) })
	_, body = get(t, ts.URL+"/api/v1/status", "")
	json.Unmarshal([]byte(body), &st)
	if st.Inputs[0].Rate != 0 {
		t.Fatalf("rate from a sample out of the window: %v", st.Inputs[0].Rate)
	}
}

func TestDeadLetters(t *testing.T) {
	src := &fixedSource{st: sampleStatus()}
	s, ts := newTestServer(t, src)
	dl1 := DeadLetter{Topic: "sensors/a/telemetry", Reason: "invalid JSON", Sample: "{oops", Time: t0}
	src.set(func(st *Status) { st.Inputs[0].LastDeadLetter = &dl1 })
	s.dead.observe(src.Status().Inputs)
	s.dead.observe(src.Status().Inputs) // the same one again: kept once
	dl2 := DeadLetter{Input: "telemetry", Topic: "sensors/b/telemetry", Reason: "payload of 9000 bytes exceeds max_payload 4096", Sample: "xxxx", Time: t0.Add(time.Second)}
	s.DeadLetter(dl2) // the hook
	src.set(func(st *Status) { d := dl2; d.Input = ""; st.Inputs[0].LastDeadLetter = &d })
	_, body := get(t, ts.URL+"/api/v1/deadletters", "") // observes dl2 again: kept once
	var out struct {
		Totals []struct {
			Input       string `json:"input"`
			DeadLetters uint64 `json:"dead_letters"`
		} `json:"totals"`
		Samples []DeadLetter `json:"samples"`
	}
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatal(err)
	}
	want1 := dl1
	want1.Input = "telemetry"
	if len(out.Totals) != 1 || out.Totals[0].DeadLetters != 7 || len(out.Samples) != 2 || out.Samples[0] != dl2 || out.Samples[1] != want1 {
		t.Fatalf("dead letters: %s", body)
	}
	// The ring keeps the newest.
	for i := 0; i < deadLetterSamples+5; i++ {
		s.DeadLetter(DeadLetter{Input: "telemetry", Reason: "r", Time: t0.Add(time.Duration(i+10) * time.Second)})
	}
	l := s.dead.list()
	if len(l) != deadLetterSamples || !l[0].Time.Equal(t0.Add(time.Duration(deadLetterSamples+14)*time.Second)) {
		t.Fatalf("ring: %d kept, newest %v", len(l), l[0].Time)
	}
}

func entry(seq uint64, rule, payload string) buffer.Entry {
	return buffer.Entry{Seq: seq, Rule: rule, Payload: []byte(payload)}
}

func TestRulesLastOutputs(t *testing.T) {
	src := &fixedSource{st: sampleStatus()}
	s, ts := newTestServer(t, src)
	var es []buffer.Entry
	for i := 1; i <= lastOutputs+3; i++ {
		es = append(es, entry(uint64(i), "pump_temp_1m", `{"rule":"pump_temp_1m","values":{"n":`+strconv.Itoa(i)+`}}`))
	}
	es = append(es, entry(uint64(len(es)+1), "alerts", `{"rule":"alerts","event":"raised","values":{"t":91}}`))
	s.Committed(es, time.Time{}, time.Millisecond)
	_, body := get(t, ts.URL+"/api/v1/rules?rule=alerts,pump_temp_1m", "")
	var out struct{ Rules []RuleView }
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatal(err)
	}
	if len(out.Rules) != 2 || out.Rules[0].Name != "pump_temp_1m" || out.Rules[0].Emitted != 20 {
		t.Fatalf("rules: %s", body)
	}
	lo := out.Rules[0].LastOutputs
	if len(lo) != lastOutputs || lo[0].Seq != 4 || lo[len(lo)-1].Seq != lastOutputs+3 ||
		string(lo[0].Envelope) != `{"gateway":"gw-01","seq":4,"rule":"pump_temp_1m","values":{"n":4}}` {
		t.Fatalf("last outputs: %d, first %+v", len(lo), lo[0])
	}
	a := out.Rules[1].LastOutputs
	if len(a) != 1 || string(a[0].Envelope) != `{"gateway":"gw-01","seq":64,"rule":"alerts","event":"raised","values":{"t":91}}` {
		t.Fatalf("alerts last outputs: %+v", a)
	}
	_, body = get(t, ts.URL+"/api/v1/rules?rule=alerts", "")
	out.Rules = nil
	json.Unmarshal([]byte(body), &out)
	if len(out.Rules) != 1 || out.Rules[0].Name != "alerts" {
		t.Fatalf("filtered rules: %s", body)
	}
}

func TestStreamFiltersByRule(t *testing.T) {
	src := &fixedSource{st: sampleStatus()}
	s, ts := newTestServer(t, src)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", ts.URL+"/api/v1/stream?rule=alerts", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	r := bufio.NewReader(resp.Body)
	if line, _ := r.ReadString('\n'); line != ": subscribed\n" {
		t.Fatalf("first line %q", line)
	}
	r.ReadString('\n')
	s.Committed([]buffer.Entry{
		entry(10, "pump_temp_1m", `{"rule":"pump_temp_1m","values":{"n":1}}`),
		entry(11, "alerts", `{"rule":"alerts","values":{"t":91}}`),
		entry(12, "pump_temp_1m", `{"rule":"pump_temp_1m","values":{"n":2}}`),
	}, time.Now(), time.Millisecond)
	s.Committed([]buffer.Entry{entry(13, "alerts", `{"rule":"alerts","values":{"t":20}}`)}, time.Now(), time.Millisecond)
	want := "event: output\nid: 11\ndata: {\"gateway\":\"gw-01\",\"seq\":11,\"rule\":\"alerts\",\"values\":{\"t\":91}}\n\n" +
		"event: output\nid: 13\ndata: {\"gateway\":\"gw-01\",\"seq\":13,\"rule\":\"alerts\",\"values\":{\"t\":20}}\n\n"
	got := make([]byte, len(want))
	if _, err := io.ReadFull(r, got); err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("stream:\n%s\nwant:\n%s", got, want)
	}
}

func TestStreamTellsDropped(t *testing.T) {
	h := newHub()
	sub := h.subscribe(nil)
	env := newOutputs("gw", 1).env
	var es []buffer.Entry
	for i := 1; i <= streamQueue+5; i++ {
		es = append(es, entry(uint64(i), "r", `{"rule":"r"}`))
	}
	h.publish(es, env)
	if n := len(sub.events); n != streamQueue {
		t.Fatalf("queued %d", n)
	}
	if n := sub.takeDropped(); n != 5 {
		t.Fatalf("dropped %d, want 5", n)
	}
	h.close()
	if sub := h.subscribe(nil); sub != nil {
		t.Fatal("subscribed to a closed hub")
	}
}

func TestUIFilesAreSelfContained(t *testing.T) {
	_, ts := newTestServer(t, &fixedSource{st: sampleStatus()})
	for _, p := range []string{"/", "/app.js", "/style.css"} {
		code, body := get(t, ts.URL+p, "")
		if code != 200 {
			t.Fatalf("%s: %d", p, code)
		}
		for _, bad := range []string{"http://", "https://", "//cdn", "innerHTML"} {
			if strings.Contains(body, bad) {
				t.Errorf("%s contains %q: the dashboard must load nothing from elsewhere and set no HTML from data", p, bad)
			}
		}
	}
	if code, _ := get(t, ts.URL+"/nope.js", ""); code != 404 {
		t.Fatalf("unknown file: %d", code)
	}
}
