package uplink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluiceio/sluice/buffer"
)

const testGateway = "gw-01"

// startServer starts an embedded nats-server on 127.0.0.1 (port -1: any
// free port) that stores JetStream data in storeDir, and shuts it down at
// the end of the test.
func startServer(t testing.TB, port int, jetStream bool, storeDir string) *server.Server {
	t.Helper()
	s, err := server.NewServer(&server.Options{
		Host:      "127.0.0.1",
		Port:      port,
		JetStream: jetStream,
		StoreDir:  storeDir,
		NoLog:     true,
		NoSigs:    true,
	})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		t.Fatal("nats-server not ready within 10s")
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

func serverPort(t testing.TB, s *server.Server) int {
	t.Helper()
	return s.Addr().(*net.TCPAddr).Port
}

// connect returns a plain client connection for the test's own checks.
func connect(t testing.TB, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

func createStream(t testing.TB, js jetstream.JetStream, name string, subjects ...string) jetstream.Stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name:     name,
		Subjects: subjects,
		Storage:  jetstream.FileStorage,
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func newTestNATS(t testing.TB, url string, opts ...NATSOption) *NATS {
	t.Helper()
	opts = append([]NATSOption{
		WithGateway(testGateway),
		WithLogger(slog.New(slog.DiscardHandler)),
		// Tests restart servers: reconnect quickly.
		WithNATSOptions(nats.CustomReconnectDelay(func(int) time.Duration { return 20 * time.Millisecond })),
	}, opts...)
	u, err := NewNATS("cloud", url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := u.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return u
}

// entries returns n entries with seqs from first on, spread over rules.
func entries(first uint64, n int, rules ...string) []buffer.Entry {
	if len(rules) == 0 {
		rules = []string{"r0", "r1", "r2"}
	}
	b := make([]buffer.Entry, n)
	for i := range b {
		seq := first + uint64(i)
		r := rules[i%len(rules)]
		b[i] = buffer.Entry{
			Seq:  seq,
			Rule: r,
			Payload: fmt.Appendf(nil, `{"rule":%q,"ts":"2026-11-25T09:01:00Z","values":{"n":%d}}`,
				r, seq),
		}
	}
	return b
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		<-tick.C
	}
}

func deliver(t testing.TB, u *NATS, batch []buffer.Entry) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := u.Deliver(ctx, batch); err != nil {
		t.Fatalf("Deliver: %v", err)
	}
}

func streamMsgs(t testing.TB, st jetstream.Stream) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

type envelope struct {
	Gateway string         `json:"gateway"`
	Seq     uint64         `json:"seq"`
	Rule    string         `json:"rule"`
	TS      string         `json:"ts"`
	Values  map[string]int `json:"values"`
}

// checkMsg checks that a message carries entry e as the uplink should send it.
func checkMsg(t testing.TB, subject string, hdr nats.Header, data []byte, e buffer.Entry, wantSubject string) {
	t.Helper()
	if subject != wantSubject {
		t.Errorf("seq %d: subject %q, want %q", e.Seq, subject, wantSubject)
	}
	if got, want := hdr.Get(jetstream.MsgIDHeader), testGateway+"-"+strconv.FormatUint(e.Seq, 10); got != want {
		t.Errorf("seq %d: Nats-Msg-Id %q, want %q", e.Seq, got, want)
	}
	var env envelope
	if err := json.Unmarshal(data, &env); err != nil {
		t.Fatalf("seq %d: body %s: %v", e.Seq, data, err)
	}
	if env.Gateway != testGateway || env.Seq != e.Seq || env.Rule != e.Rule ||
		env.TS != "2026-11-25T09:01:00Z" || len(env.Values) != 1 || env.Values["n"] != int(e.Seq) {
		t.Errorf("seq %d: body %s", e.Seq, data)
	}
}

func TestNATSJetStreamDeliveryAndDedup(t *testing.T) {
	s := startServer(t, -1, true, t.TempDir())
	_, js := connect(t, s.ClientURL())
	st := createStream(t, js, "TELEMETRY", "sluice.>")
	// A small in-flight bound so that 1000 entries go through the window
	// many times.
	u := newTestNATS(t, s.ClientURL(), WithMaxInFlight(16))
	eventually(t, 10*time.Second, "connected", u.Connected)

	batch := entries(1, 1000)
	deliver(t, u, batch)
	if got := streamMsgs(t, st); got != 1000 {
		t.Fatalf("stream has %d messages, want 1000", got)
	}
	if p, d, e := u.Published.Load(), u.Duplicates.Load(), u.Errors.Load(); p != 1000 || d != 0 || e != 0 {
		t.Errorf("Published, Duplicates, Errors = %d, %d, %d; want 1000, 0, 0", p, d, e)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i, e := range batch {
		// One connection publishes in order, so stream seq = entry seq.
		m, err := st.GetMsg(ctx, uint64(i+1))
		if err != nil {
			t.Fatalf("get stream seq %d: %v", i+1, err)
		}
		checkMsg(t, m.Subject, m.Header, m.Data, e, "sluice.gw-01."+e.Rule)
	}

	// The forwarder retries a whole batch after a failure: the stream drops
	// every message as a duplicate.
	deliver(t, u, batch)
	if got := streamMsgs(t, st); got != 1000 {
		t.Fatalf("after redelivery the stream has %d messages, want 1000", got)
	}
	if p, d := u.Published.Load(), u.Duplicates.Load(); p != 2000 || d != 1000 {
		t.Errorf("Published, Duplicates = %d, %d; want 2000, 1000", p, d)
	}

	// A batch that overlaps the last one by half.
	deliver(t, u, entries(501, 1000))
	if got := streamMsgs(t, st); got != 1500 {
		t.Fatalf("after an overlapping batch the stream has %d messages, want 1500", got)
	}
	if d := u.Duplicates.Load(); d != 1500 {
		t.Errorf("Duplicates = %d, want 1500", d)
	}
}

func TestNATSCorePublish(t *testing.T) {
	s := startServer(t, -1, true, t.TempDir())
	nc, js := connect(t, s.ClientURL())
	st := createStream(t, js, "OTHER", "other.>")
	sub, err := nc.SubscribeSync("core.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	tmpl, err := ParseSubject("core.{gateway}.{rule}")
	if err != nil {
		t.Fatal(err)
	}
	u := newTestNATS(t, s.ClientURL(), WithSubject(tmpl))

	const n = 500
	batch := entries(1, n)
	deliver(t, u, batch)
	if p, d := u.Published.Load(), u.Duplicates.Load(); p != n || d != 0 {
		t.Errorf("Published, Duplicates = %d, %d; want %d, 0", p, d, n)
	}

	// Deliver returned after the server had processed every message, so a
	// sentinel published now reaches the subscriber after all of them.
	if err := nc.Publish("core.sentinel", nil); err != nil {
		t.Fatal(err)
	}
	got := 0
	for {
		m, err := sub.NextMsg(10 * time.Second)
		if err != nil {
			t.Fatalf("after %d messages: %v", got, err)
		}
		if m.Subject == "core.sentinel" {
			break
		}
		if got < n {
			checkMsg(t, m.Subject, m.Header, m.Data, batch[got], "core.gw-01."+batch[got].Rule)
		}
		got++
	}
	if got != n {
		t.Errorf("subscriber received %d messages, want %d", got, n)
	}
	if got := streamMsgs(t, st); got != 0 {
		t.Errorf("unrelated stream has %d messages", got)
	}
}

func TestNATSMixedBatch(t *testing.T) {
	s := startServer(t, -1, true, t.TempDir())
	nc, js := connect(t, s.ClientURL())
	st := createStream(t, js, "ALERTS", "alerts.>")
	sub, err := nc.SubscribeSync("loose.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	tmpl, err := ParseSubject("{rule}.{gateway}")
	if err != nil {
		t.Fatal(err)
	}
	u := newTestNATS(t, s.ClientURL(), WithSubject(tmpl))

	batch := entries(1, 300, "alerts", "loose", "alerts")
	deliver(t, u, batch)
	if got := streamMsgs(t, st); got != 200 {
		t.Errorf("stream has %d messages, want 200", got)
	}
	if err := nc.Publish("loose.sentinel", nil); err != nil {
		t.Fatal(err)
	}
	got := 0
	for {
		m, err := sub.NextMsg(10 * time.Second)
		if err != nil {
			t.Fatalf("after %d messages: %v", got, err)
		}
		if m.Subject == "loose.sentinel" {
			break
		}
		got++
	}
	if got != 100 {
		t.Errorf("core subscriber received %d messages, want 100", got)
	}
	if p := u.Published.Load(); p != 300 {
		t.Errorf("Published = %d, want 300", p)
	}
}

func TestNATSWithoutJetStream(t *testing.T) {
	s := startServer(t, -1, false, "")
	nc, _ := connect(t, s.ClientURL())
	sub, err := nc.SubscribeSync("sluice.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	u := newTestNATS(t, s.ClientURL())
	deliver(t, u, entries(1, 50))
	if err := nc.Publish("sluice.sentinel", nil); err != nil {
		t.Fatal(err)
	}
	got := 0
	for {
		m, err := sub.NextMsg(10 * time.Second)
		if err != nil {
			t.Fatalf("after %d messages: %v", got, err)
		}
		if m.Subject == "sluice.sentinel" {
			break
		}
		got++
	}
	if got != 50 {
		t.Errorf("subscriber received %d messages, want 50", got)
	}
}

func TestNATSInvalidSubject(t *testing.T) {
	s := startServer(t, -1, true, t.TempDir())
	u := newTestNATS(t, s.ClientURL())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, rule := range []string{"has space", "wild*", "end.", ""} {
		err := u.Deliver(ctx, entries(1, 3, rule))
		if !errors.Is(err, ErrInvalidSubject) {
			t.Errorf("rule %q: Deliver returned %v, want ErrInvalidSubject", rule, err)
		}
	}
	if e := u.Errors.Load(); e != 4 {
		t.Errorf("Errors = %d, want 4", e)
	}
}

func TestNATSServerRestart(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, -1, true, dir)
	port := serverPort(t, s)
	url := s.ClientURL()
	_, js := connect(t, url)
	createStream(t, js, "TELEMETRY", "sluice.>")

	u := newTestNATS(t, url)
	deliver(t, u, entries(1, 10))

	s.Shutdown()
	s.WaitForShutdown()
	eventually(t, 10*time.Second, "uplink sees the server gone", func() bool { return !u.Connected() })

	batch := entries(11, 10)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	start := time.Now()
	err := u.Deliver(ctx, batch)
	cancel()
	if !errors.Is(err, ErrNotConnected) {
		t.Fatalf("Deliver with the server stopped: %v, want ErrNotConnected", err)
	}
	if took := time.Since(start); took > 2*time.Second+500*time.Millisecond {
		t.Errorf("Deliver with the server stopped took %v, past its 2s deadline", took)
	}
	t.Logf("with the server stopped: %v", err)

	s2 := startServer(t, port, true, dir)
	eventually(t, 20*time.Second, "Deliver succeeds after the restart", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return u.Deliver(ctx, batch) == nil
	})
	_, js2 := connect(t, s2.ClientURL())
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js2.Stream(ctx, "TELEMETRY")
	if err != nil {
		t.Fatal(err)
	}
	if got := streamMsgs(t, st); got != 20 {
		t.Errorf("stream has %d messages, want 20", got)
	}
	if e := u.Errors.Load(); e < 1 {
		t.Errorf("Errors = %d, want at least 1", e)
	}
}

func TestNATSServerDownAtBoot(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()

	u := newTestNATS(t, fmt.Sprintf("nats://127.0.0.1:%d", port))
	if u.Connected() {
		t.Fatal("connected with no server")
	}
	batch := entries(1, 5)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	err = u.Deliver(ctx, batch)
	cancel()
	if !errors.Is(err, ErrNotConnected) || !IsUnreachable(err) {
		t.Fatalf("Deliver with no server: %v, want ErrNotConnected, unreachable", err)
	}

	s := startServer(t, port, true, t.TempDir())
	_, js := connect(t, s.ClientURL())
	st := createStream(t, js, "TELEMETRY", "sluice.>")
	eventually(t, 20*time.Second, "Deliver succeeds once the server is up", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return u.Deliver(ctx, batch) == nil
	})
	if got := streamMsgs(t, st); got != 5 {
		t.Errorf("stream has %d messages, want 5", got)
	}
}

func TestNATSContextCanceled(t *testing.T) {
	s := startServer(t, -1, true, t.TempDir())
	_, js := connect(t, s.ClientURL())
	createStream(t, js, "TELEMETRY", "sluice.>")
	u := newTestNATS(t, s.ClientURL())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := u.Deliver(ctx, entries(1, 10))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Deliver with a canceled context: %v, want context.Canceled", err)
	}
	// The next batch is delivered (and the canceled one's slab not reused).
	deliver(t, u, entries(1, 10))
}

func TestNewNATSErrors(t *testing.T) {
	bad, err := ParseTemplate("a..{rule}")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		opts []NATSOption
		is   error
	}{
		{"no gateway", nil, ErrNoGateway},
		{"bad subject", []NATSOption{WithGateway("g"), WithSubject(bad)}, ErrInvalidTemplate},
		{"max in flight", []NATSOption{WithGateway("g"), WithMaxInFlight(0)}, nil},
		{"ack timeout", []NATSOption{WithGateway("g"), WithAckTimeout(0)}, nil},
	}
	for _, tt := range tests {
		u, err := NewNATS("cloud", "nats://127.0.0.1:1", tt.opts...)
		if err == nil {
			u.Close()
			t.Errorf("%s: no error", tt.name)
			continue
		}
		if tt.is != nil && !errors.Is(err, tt.is) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.is)
		}
	}
}

func TestNATSReconnectDelay(t *testing.T) {
	for attempt := 1; attempt < 100; attempt++ {
		d := natsReconnectDelay(attempt)
		if d < natsReconnectMin/2 || d > natsReconnectMax {
			t.Errorf("attempt %d: delay %v outside [%v, %v]", attempt, d, natsReconnectMin/2, natsReconnectMax)
		}
		if attempt >= 10 && d < natsReconnectMax/2 {
			t.Errorf("attempt %d: delay %v, want the capped range", attempt, d)
		}
	}
}

func BenchmarkNATSDeliverJetStream(b *testing.B) {
	s := startServer(b, -1, true, b.TempDir())
	_, js := connect(b, s.ClientURL())
	createStream(b, js, "TELEMETRY", "sluice.>")
	u := newTestNATS(b, s.ClientURL())
	const batchSize = 1000
	seq := uint64(1)
	b.ReportAllocs()
	for b.Loop() {
		batch := entries(seq, batchSize)
		seq += batchSize
		deliver(b, u, batch)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batchSize), "ns/entry")
}

// TestNATSPermanentErrors: an entry no retry can deliver is named in a
// PermanentError (the forwarder sets it aside); a server that is down is not
// permanent.
func TestNATSPermanentErrors(t *testing.T) {
	s := startServer(t, -1, true, t.TempDir())
	_, js := connect(t, s.ClientURL())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "SMALL", Subjects: []string{"sluice.>"}, MaxMsgSize: 512}); err != nil {
		t.Fatal(err)
	}
	u := newTestNATS(t, s.ClientURL())
	eventually(t, 10*time.Second, "connected", u.Connected)

	batch := entries(1, 5, "r0")
	batch[3].Payload = fmt.Appendf(nil, `{"pad":%q}`, make([]byte, 1000))
	err := u.Deliver(ctx, batch)
	if p, ok := IsPermanent(err); !ok || p.Seq != 4 || !errors.Is(err, jetstream.ErrStreamMessageExceedsMaximum) || IsUnreachable(err) {
		t.Errorf("too large for the stream: %v, want a PermanentError for seq 4", err)
	}
	err = u.Deliver(ctx, entries(7, 3, "bad subject"))
	if p, ok := IsPermanent(err); !ok || p.Seq != 7 || !errors.Is(err, ErrInvalidSubject) || IsUnreachable(err) {
		t.Errorf("invalid subject: %v, want a PermanentError for seq 7", err)
	}

	s.Shutdown()
	s.WaitForShutdown()
	eventually(t, 10*time.Second, "disconnected", func() bool { return !u.Connected() })
	err = u.Deliver(ctx, entries(10, 2, "r0"))
	if _, ok := IsPermanent(err); err == nil || ok || !IsUnreachable(err) {
		t.Errorf("server down: %v, want a transient error, unreachable", err)
	}
}
