package pipeline

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sluiceio/sluice/agent/ingest"
	"github.com/sluiceio/sluice/buffer"
	"github.com/sluiceio/sluice/internal/testenv"
	"github.com/sluiceio/sluice/rules"
	"github.com/sluiceio/sluice/uplink"
)

// acker records acks; it stands in for the MQTT broker's side of PUBACK.
type acker struct {
	id   uint16
	acks chan uint16
}

func (a *acker) Ack() { a.acks <- a.id }

type harness struct {
	t      *testing.T
	buf    *buffer.Buffer
	p      *Pipeline
	plan   *rules.Plan
	in     *Input
	cancel context.CancelFunc
	done   chan error
	acks   chan uint16
}

func start(t *testing.T, path string) *harness {
	t.Helper()
	buf, err := buffer.Open(path, buffer.Options{Uplinks: []string{"cloud"}})
	if err != nil {
		t.Fatal(err)
	}
	plan, err := rules.Compile(rules.Spec{Name: "n", GroupBy: []string{"device"}, Tumbling: time.Hour,
		Select: []rules.SelectItem{{Name: "n", Expr: "count(*)"}, {Name: "sum_t", Expr: "sum(t)"}}})
	if err != nil {
		t.Fatal(err)
	}
	in := &Input{Name: "telemetry", MaxPayload: 64}
	p := New(buf, []*Input{in}, []*Rule{{Plan: plan}}, Options{Gateway: "gw", CommitInterval: time.Millisecond, CommitMaxRecords: 100, CheckpointInterval: time.Second})
	if err := p.Restore(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{t: t, buf: buf, p: p, plan: plan, in: in, cancel: cancel, done: make(chan error, 1), acks: make(chan uint16, 100)}
	go func() { h.done <- p.Run(ctx) }()
	return h
}

func (h *harness) stop() {
	h.cancel()
	if err := <-h.done; err != nil {
		h.t.Fatal(err)
	}
	h.buf.Close()
}

// send hands a QoS 1 message to the pipeline and waits for its ack.
func (h *harness) send(id uint16, dup bool, payload string) {
	h.t.Helper()
	// Far in the future: the ticker must not close the one-hour window
	// between messages, whatever the machine's speed.
	h.p.In() <- ingest.Message{Topic: "sensors/d/telemetry", Payload: []byte(payload), Received: time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC),
		Acker: &acker{id: id, acks: h.acks}, PacketID: id, Dup: dup}
	select {
	case got := <-h.acks:
		if got != id {
			h.t.Fatalf("acked %d, want %d", got, id)
		}
	case <-time.After(10 * time.Second):
		h.t.Fatalf("message %d not acked", id)
	}
}

func TestRedeliveryAfterRestartIsNotCountedTwice(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buf.db")
	h := start(t, path)
	for id := uint16(1); id <= 3; id++ {
		h.send(id, false, fmt.Sprintf(`{"device":"d","t":%d}`, id))
	}
	h.stop()

	// The broker redelivers 2 and 3 (their acks were "lost"); 3's packet id
	// was reused for another message, so only 2 is a true duplicate.
	h = start(t, path)
	h.send(2, true, `{"device":"d","t":2}`)
	h.send(3, true, `{"device":"d","t":30}`)
	h.send(4, false, `{"device":"d","t":4}`)
	if got := h.in.Stats.Duplicates.Load(); got != 1 {
		t.Errorf("duplicates %d, want 1", got)
	}
	// A broker that lost the session cannot redeliver: the record is dropped.
	h.p.SessionPresent(0, false)
	h.send(1, true, `{"device":"d","t":1}`)
	if got := h.in.Stats.Duplicates.Load(); got != 1 {
		t.Errorf("after session reset: duplicates %d, want 1", got)
	}
	h.stop()

	h = start(t, path)
	defer h.stop()
	out := h.plan.Flush(nil)
	if len(out) != 1 {
		t.Fatalf("%d outputs", len(out))
	}
	// 1+2+3 before the restart, then 30, 4 and 1 again (after the reset).
	if n, sum := out[0].Values[0].Num, out[0].Values[1].Num; n != 6 || sum != 1+2+3+30+4+1 {
		t.Errorf("n %v sum %v, want 6 and 41", n, sum)
	}
}

func TestDeadLettersAreAckedAndSampled(t *testing.T) {
	h := start(t, filepath.Join(t.TempDir(), "buf.db"))
	defer h.stop()
	h.send(1, false, `{"device":`)
	h.send(2, false, fmt.Sprintf(`{"device":"%0100d"}`, 0))
	if got := h.in.Stats.DeadLetters.Load(); got != 2 {
		t.Fatalf("dead letters %d, want 2", got)
	}
	dl := h.in.Stats.LastDeadLetter()
	if dl.Reason != "payload of 113 bytes exceeds max_payload 64" || dl.Topic != "sensors/d/telemetry" {
		t.Errorf("last dead letter %+v", dl)
	}
}

// TestForwarderDeliversAndAcks runs the forwarder against a real JetStream
// server: every committed entry lands in the stream once, in seq order, and
// the cursor moves past them so the buffer empties.
func TestForwarderDeliversAndAcks(t *testing.T) {
	dir := t.TempDir()
	ns, err := testenv.StartNATS(filepath.Join(dir, "js"))
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Shutdown()
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	stream, err := testenv.CreateStream(context.Background(), nc, "T", "t.>")
	if err != nil {
		t.Fatal(err)
	}
	col, err := testenv.Collect(context.Background(), stream)
	if err != nil {
		t.Fatal(err)
	}
	defer col.Stop()
	subject, _ := uplink.ParseSubject("t.{gateway}.{rule}")
	up, err := uplink.NewNATS("up", ns.ClientURL(), uplink.WithGateway("gw"), uplink.WithSubject(subject))
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()

	buf, err := buffer.Open(filepath.Join(dir, "buf.db"), buffer.Options{Uplinks: []string{"up"}})
	if err != nil {
		t.Fatal(err)
	}
	defer buf.Close()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	acked := make(chan uint64, 10)
	fwd := &Forwarder{Buffer: buf, Uplink: up, BatchSize: 3, OnAck: func(pos buffer.Position) { acked <- pos.Normal }}
	go func() { defer wg.Done(); fwd.Run(ctx) }()
	c := buffer.Commit{Entries: make([]buffer.Entry, 7)}
	for i := range c.Entries {
		c.Entries[i] = buffer.Entry{Rule: "r", Payload: []byte(`{"values":{"n":1}}`)}
	}
	if err := buf.Commit(&c); err != nil {
		t.Fatal(err)
	}
	if got, err := col.WaitSum("n", 7, 10*time.Second); err != nil {
		t.Fatalf("%v (%v)", err, got)
	}
	for seq := uint64(0); seq < 7; {
		seq = <-acked
	}
	cancel()
	wg.Wait()
	envs, ids, _ := col.Snapshot()
	for i, e := range envs {
		if e.Seq != uint64(i+1) || ids[i] != fmt.Sprintf("gw-%d", i+1) {
			t.Errorf("message %d: seq %d id %s", i, e.Seq, ids[i])
		}
	}
	if cur, _ := buf.Cursor("up"); cur.Normal != 7 || buf.Records() != 0 {
		t.Errorf("cursor %d, records %d", cur, buf.Records())
	}
}

// TestPositionsAreSavedWithTheirCommit checks that a source's position (a
// log offset) is saved by the commit that covers its message, latest wins.
func TestPositionsAreSavedWithTheirCommit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buf.db")
	h := start(t, path)
	for i, off := range []string{"10", "20", "35"} {
		h.p.In() <- ingest.Message{Topic: "/var/log/x.log", Payload: []byte(`{"device":"d","t":1}`), Received: time.Unix(3600*1000, 0),
			Position: &ingest.Position{Scope: "log/x", Key: []byte("inode-7"), Value: []byte(off)}, Acker: &acker{id: uint16(i + 1), acks: h.acks}, PacketID: uint16(i + 1)}
		<-h.acks
	}
	h.stop()
	buf, err := buffer.Open(path, buffer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer buf.Close()
	kvs, err := buf.LoadState("log/x")
	if err != nil || len(kvs) != 1 || string(kvs[0].Key) != "inode-7" || string(kvs[0].Value) != "35" {
		t.Fatalf("saved positions %q %v", kvs, err)
	}
}

// TestStageFailuresAreDeadLetters checks that a record the input stage
// rejects (schema) is counted, sampled with its reason, and still acked.
func TestStageFailuresAreDeadLetters(t *testing.T) {
	h := start(t, filepath.Join(t.TempDir(), "buf.db"))
	defer h.stop()
	min := -40.0
	stage, err := ingest.NewStage(ingest.StageOptions{Schema: []ingest.FieldSpec{{Name: "t", Required: true, Type: "number", Min: &min}}})
	if err != nil {
		t.Fatal(err)
	}
	h.in.Stage = stage // before any message: Run reads it only when handling one
	h.send(1, false, `{"device":"d"}`)
	h.send(2, false, `{"device":"d","t":-50}`)
	h.send(3, false, `{"device":"d","t":20}`)
	if got := h.in.Stats.DeadLetters.Load(); got != 2 {
		t.Fatalf("dead letters %d, want 2", got)
	}
	if dl := h.in.Stats.LastDeadLetter(); dl.Reason != "field t = -50 is out of range" || dl.Sample != `{"device":"d","t":-50}` {
		t.Errorf("last dead letter %+v", dl)
	}
}
