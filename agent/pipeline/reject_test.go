package pipeline

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluiceio/sluice/buffer"
	"github.com/sluiceio/sluice/uplink"
)

// TestForwarderSetsRejectedEntriesAside commits entries of which JetStream
// can never take two (one larger than the stream's max_msg_size, one whose
// rule makes an invalid subject): the forwarder reports each once to
// OnReject, delivers every other entry and moves the cursor past them all,
// instead of retrying forever behind the first.
func TestForwarderSetsRejectedEntriesAside(t *testing.T) {
	ns := newNATSServer(t)
	ns.start()
	st := smallMsgStream(t, ns, false)

	buf := openBuffer(t, "up")
	c := withTooLarge(30, "sum", 14) // seq 15
	c.Entries[19].Rule = "bad rule"  // seq 20
	if err := buf.Commit(&c); err != nil {
		t.Fatal(err)
	}

	var (
		mu       sync.Mutex
		rejected = map[uint64]error{}
	)
	a := newAcks()
	f := NewForwarder(buf, newUplink(t, "up", ns.url()), WithOnAck(a.onAck), WithForwarderLogger(quiet),
		WithBackoff(10*time.Millisecond, 50*time.Millisecond),
		WithOnReject(func(e *buffer.Entry, err error) {
			mu.Lock()
			defer mu.Unlock()
			if _, dup := rejected[e.Seq]; dup {
				t.Errorf("seq %d rejected twice", e.Seq)
			}
			rejected[e.Seq] = err
		}))
	runForwarder(t, f)
	if !a.wait(30, 0, 30*time.Second) {
		t.Fatalf("cursor %+v, want 30: %+v", a.get(), f.Status())
	}

	mu.Lock()
	defer mu.Unlock()
	if len(rejected) != 2 {
		t.Fatalf("rejected %v, want seqs 15 and 20", rejected)
	}
	if err := rejected[15]; !errors.Is(err, jetstream.ErrStreamMessageExceedsMaximum) {
		t.Errorf("seq 15: %v, want the stream's size limit", err)
	}
	if err := rejected[20]; !errors.Is(err, uplink.ErrInvalidSubject) {
		t.Errorf("seq 20: %v, want ErrInvalidSubject", err)
	}
	if s := f.Status(); s.Rejected != 2 || s.Delivered != 28 {
		t.Errorf("status %+v, want 2 rejected and 28 delivered", s)
	}
	msgs := readStream(t, st)
	if len(msgs) != 28 {
		t.Fatalf("stream holds %d messages, want 28", len(msgs))
	}
	for _, m := range msgs {
		if m.seq == 15 || m.seq == 20 {
			t.Errorf("seq %d reached the stream", m.seq)
		}
	}
}

// smallMsgStream creates stream T on t.>, which refuses messages over 1 KiB
// and takes fast batches if fast is set.
func smallMsgStream(t *testing.T, ns *natsServer, fast bool) jetstream.Stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := ns.jetStream().CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"},
		Storage: jetstream.FileStorage, MaxMsgSize: 1024, Duplicates: 10 * time.Minute, AllowBatchPublish: fast})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// withTooLarge returns a commit of n entries of rule, those at the indexes
// large too large for smallMsgStream.
func withTooLarge(n int, rule string, large ...int) buffer.Commit {
	c := buffer.Commit{Entries: make([]buffer.Entry, n)}
	for i := range c.Entries {
		c.Entries[i] = buffer.Entry{Rule: rule, Payload: []byte(`{"values":{"n":1}}`)}
	}
	for _, i := range large {
		c.Entries[i].Payload = []byte(`{"values":{"n":1},"pad":"` + strings.Repeat("x", 4000) + `"}`)
	}
	return c
}
