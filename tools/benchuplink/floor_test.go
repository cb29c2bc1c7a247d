package main

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluiceio/sluice/internal/testenv"
)

// TestFloorPublisherStoresEveryRecord runs the yardstick against an
// embedded server: every record of every batch is stored once, in order,
// with its Nats-Msg-Id, and a batch sent again is dropped as duplicates.
func TestFloorPublisherStoresEveryRecord(t *testing.T) {
	s, err := testenv.StartNATS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()
	ns, err := openStream(s.ClientURL(), true)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.close()

	p, err := dialFloor(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer p.conn.Close()
	const size, batches = 1700, 3 // more than three flow windows of 500 each
	src := newBatchSource(size*batches, size)
	var first []uint64
	for b := src.next(); b != nil; b = src.next() {
		first = append(first, b[0].Seq)
		if err := p.deliver(b, "bench."+gateway+".r"); err != nil {
			t.Fatalf("batch from seq %d: %v", b[0].Seq, err)
		}
	}
	if len(first) != batches {
		t.Fatalf("%d batches, want %d", len(first), batches)
	}
	// The last batch again: the stream drops every message by its id,
	// and the commit's count says the batch is whole.
	again := newBatchSource(size*batches, size)
	again.seq = first[batches-1]
	if err := p.deliver(again.next(), "bench."+gateway+".r"); err != nil {
		t.Fatalf("the last batch again: %v", err)
	}

	if err := ns.check(size * batches); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, seq := range []uint64{1, size, size + 1, size * batches} {
		m, err := ns.st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("stream seq %d: %v", seq, err)
		}
		if got, want := m.Header.Get(jetstream.MsgIDHeader), gateway+"-"+strconv.FormatUint(seq, 10); got != want {
			t.Errorf("stream seq %d: Nats-Msg-Id %q, want %q", seq, got, want)
		}
		if m.Subject != "bench."+gateway+".r" {
			t.Errorf("stream seq %d: subject %q", seq, m.Subject)
		}
	}
}
