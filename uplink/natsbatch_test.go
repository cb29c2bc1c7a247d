package uplink

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluiceio/sluice/buffer"
)

func createBatchedStream(t testing.TB, js jetstream.JetStream, cfg jetstream.StreamConfig) jetstream.Stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg.AllowBatchPublish = true
	st, err := js.CreateStream(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func checkCounts(t *testing.T, u *NATS, st jetstream.Stream, msgs, fast, errs uint64) {
	t.Helper()
	if got := streamMsgs(t, st); got != msgs {
		t.Errorf("stream has %d messages, want %d", got, msgs)
	}
	if f, e := u.FastBatches.Load(), u.Errors.Load(); f != fast || e != errs {
		t.Errorf("FastBatches, Errors = %d, %d; want %d, %d", f, e, fast, errs)
	}
}

func TestNATSFastBatch(t *testing.T) {
	s := startServer(t, -1, true, t.TempDir())
	_, js := connect(t, s.ClientURL())
	st := createBatchedStream(t, js, jetstream.StreamConfig{Name: "TELEMETRY", Subjects: []string{"sluice.>"}, Storage: jetstream.FileStorage})
	u := newTestNATS(t, s.ClientURL())
	eventually(t, 10*time.Second, "connected", u.Connected)

	deliver(t, u, entries(1, 10))
	checkCounts(t, u, st, 10, 1, 0)

	// Larger than two flow windows, to three subjects.
	batch := entries(11, 1200)
	deliver(t, u, batch)
	checkCounts(t, u, st, 1210, 2, 0)
	if p := u.Published.Load(); p != 1210 {
		t.Errorf("Published = %d, want 1210", p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, e := range batch {
		m, err := st.GetMsg(ctx, e.Seq) // one connection in order: stream seq = entry seq
		if err != nil {
			t.Fatalf("get stream seq %d: %v", e.Seq, err)
		}
		checkMsg(t, m.Subject, m.Header, m.Data, e, "sluice.gw-01."+e.Rule)
	}

	// A replay (after a failure or a crash): the stream drops what it
	// has by Nats-Msg-Id, first message included, and stores the rest.
	deliver(t, u, entries(1000, 300))
	checkCounts(t, u, st, 1299, 3, 0)

	// A duplicate inside a batch is dropped and the batch goes on.
	mixed := append(entries(1300, 5), entries(1200, 1)...)
	mixed = append(mixed, entries(1305, 5)...)
	deliver(t, u, mixed)
	checkCounts(t, u, st, 1309, 4, 0)
	for _, e := range mixed {
		if e.Seq == 1200 {
			continue
		}
		m, err := st.GetMsg(ctx, e.Seq)
		if err != nil {
			t.Fatalf("get stream seq %d: %v", e.Seq, err)
		}
		checkMsg(t, m.Subject, m.Header, m.Data, e, "sluice.gw-01."+e.Rule)
	}
}

// A stream that does not allow fast batches, or an uplink told not to use
// them, gets a JSON ack per message.
func TestNATSFastBatchOff(t *testing.T) {
	s := startServer(t, -1, true, t.TempDir())
	_, js := connect(t, s.ClientURL())
	plain := createStream(t, js, "PLAIN", "sluice.gw-01.>")
	batched := createBatchedStream(t, js, jetstream.StreamConfig{Name: "BATCHED", Subjects: []string{"sluice.gw-02.>"}})

	u := newTestNATS(t, s.ClientURL())
	for i := range 3 {
		deliver(t, u, entries(uint64(1+100*i), 100))
	}
	checkCounts(t, u, plain, 300, 0, 0)

	off := newTestNATS(t, s.ClientURL(), WithGateway("gw-02"), WithFastBatch(false))
	for i := range 3 {
		deliver(t, off, entries(uint64(1+100*i), 100))
	}
	checkCounts(t, off, batched, 300, 0, 0)

	// A batch split over two streams goes one message at a time too.
	r0 := createBatchedStream(t, js, jetstream.StreamConfig{Name: "R0", Subjects: []string{"sluice.gw-03.r0"}})
	r1 := createBatchedStream(t, js, jetstream.StreamConfig{Name: "R1", Subjects: []string{"sluice.gw-03.r1"}})
	split := newTestNATS(t, s.ClientURL(), WithGateway("gw-03"))
	for i := range 3 {
		deliver(t, split, entries(uint64(1+10*i), 10, "r0", "r1"))
	}
	checkCounts(t, split, r0, 15, 0, 0)
	checkCounts(t, split, r1, 15, 0, 0)
	deliver(t, split, entries(31, 10, "r1"))
	checkCounts(t, split, r1, 25, 1, 0)
	if p := split.Published.Load(); p != 40 {
		t.Errorf("Published = %d, want 40", p)
	}
}

// A message the stream refuses ends a fast batch; the next delivery, one
// message at a time, finds which entry it was and says it for good; the
// one after is fast again.
func TestNATSFastBatchRefusedMessage(t *testing.T) {
	s := startServer(t, -1, true, t.TempDir())
	_, js := connect(t, s.ClientURL())
	st := createBatchedStream(t, js, jetstream.StreamConfig{Name: "SMALL", Subjects: []string{"sluice.>"}, MaxMsgSize: 512})
	u := newTestNATS(t, s.ClientURL())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	deliver(t, u, entries(1, 3, "r0"))
	batch := entries(4, 10, "r0")
	batch[5].Payload = []byte(`{"pad":"` + strings.Repeat("x", 1000) + `"}`)
	err := u.Deliver(ctx, batch)
	if _, ok := IsPermanent(err); err == nil || ok {
		t.Fatalf("fast batch with a message too large: %v, want a transient error", err)
	}
	t.Logf("fast batch with a message too large: %v", err)
	checkCounts(t, u, st, 3+5, 1, 1)
	err = u.Deliver(ctx, batch)
	if p, ok := IsPermanent(err); !ok || p.Seq != 9 {
		t.Fatalf("the same batch one at a time: %v, want a PermanentError for seq 9", err)
	}
	// The forwarder sets seq 9 aside and delivers the rest.
	rest := append(append([]buffer.Entry{}, batch[:5]...), batch[6:]...)
	deliver(t, u, rest)
	checkCounts(t, u, st, 12, 1, 2)
	deliver(t, u, entries(14, 10, "r0"))
	checkCounts(t, u, st, 22, 2, 2)
}

// A user who may not read the stream's configuration publishes with an ack
// per message, as before fast batches.
func TestNATSFastBatchWithoutStreamInfoPermission(t *testing.T) {
	admin := &server.User{Username: "admin", Password: "a"}
	gw := &server.User{Username: "gw", Password: "g", Permissions: &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: []string{"sluice.>", "$JS.API.STREAM.NAMES"}},
		Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX.>"}},
	}}
	s := startAuthServer(t, &server.Options{JetStream: true, StoreDir: t.TempDir(), Users: []*server.User{admin, gw}})
	nc, err := nats.Connect(s.ClientURL(), nats.UserInfo("admin", "a"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	st := createBatchedStream(t, js, jetstream.StreamConfig{Name: "B", Subjects: []string{"sluice.>"}})
	u := newTestNATS(t, s.ClientURL(), WithAckTimeout(2*time.Second), WithNATSOptions(nats.UserInfo("gw", "g")))
	for i := range 3 {
		deliver(t, u, entries(uint64(1+10*i), 10))
	}
	checkCounts(t, u, st, 30, 0, 0)
}

// With many fast batches open on the stream (other gateways), the server
// asks for a flow ack per message at first: the batch goes through all the
// same, every reply read as it comes.
func TestNATSFastBatchManyOpenBatches(t *testing.T) {
	s := startServer(t, -1, true, t.TempDir())
	nc, js := connect(t, s.ClientURL())
	st := createBatchedStream(t, js, jetstream.StreamConfig{Name: "TELEMETRY", Subjects: []string{"sluice.>"}})
	u := newTestNATS(t, s.ClientURL(), WithAckTimeout(5*time.Second))
	deliver(t, u, entries(1, 10))
	// 300 batches of another publisher, started and left open.
	for i := range 300 {
		m := &nats.Msg{Subject: "sluice.other.x", Reply: fmt.Sprintf("_INBOX.other.b%d.500.fail.1.0.$FI", i), Data: []byte("x")}
		if err := nc.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	deliver(t, u, entries(11, 3000))
	checkCounts(t, u, st, 10+300+3000, 2, 0)
	if d, _ := u.fast.sub.Dropped(); d != 0 {
		t.Errorf("%d replies dropped", d)
	}
}
