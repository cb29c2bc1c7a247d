package uplink

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/sluiceio/sluice/buffer"
)

// Fast batch publishing. A stream created with allow_batched (NATS 2.14+)
// takes a batch of messages whose reply subjects say the batch id, the
// message's place in it and its operation (start, append, commit):
//
//	<inbox>.<batch id>.<flow>.fail.<seq>.<op>.$FI
//
// The server stores them like any publish (Nats-Msg-Id deduplication
// included) but answers with a flow-control ack every few hundred messages
// and one PubAck for the commit, holding the count of messages the batch
// stored, instead of a JSON ack per message: the client's cost per message
// drops from ~6 µs to ~2 µs (see README, uplink figures). In "fail" gap mode
// a batch stops at the first message the stream refuses (or a lost one) and
// the commit's count says how far it got; Deliver counts only a batch whose
// count is the batch's length. A fast batch is not atomic: what was stored
// before a failure stays, and the retry drops it by Nats-Msg-Id.
//
// A duplicate (a replay after a failure or a crash) is dropped by the stream
// and the batch goes on. A message the stream refuses (too large, say) ends
// the batch with an error that does not always say which entry it was: the
// delivery after a failed one goes one message at a time with a JSON ack
// each, which tells the forwarder which entry to set aside; the next one is
// fast again.
//
// Flow control follows ADR-50: at most natsFastOutstanding flow windows in
// flight (one message per window until the server's first ack says how
// often it acks: with many publishers on the stream it acks every message);
// a ping each third of the ack timeout without an answer (a lost flow ack),
// failure after three; a batch given up on is ended at once (operation 3)
// rather than left open on the server until its timeout. A batch whose
// replies were dropped by the client (its channel full) counts as failed:
// an error reply may have been among them.
const (
	natsFastFlow        = 500 // messages per flow ack we ask for (the server caps it at 500)
	natsFastOutstanding = 3   // flow windows in flight before the publisher waits
	natsFastMinBatch    = 2   // smaller deliveries go one message at a time
)

// natsFast is the state of fast batch publishing: one subscription on an
// inbox that receives the flow acks and PubAcks of every batch. Owned by the
// Deliver goroutine.
type natsFast struct {
	inbox  string
	sub    *nats.Subscription
	ch     chan *nats.Msg
	hdr    nats.Header // reused: PublishMsg copies it into the connection's buffer
	msg    nats.Msg    // the same
	reply  []byte
	timer  *time.Timer
	prefix []byte // <inbox>.<batch id>. of the current batch
	pre    string // the same
}

// batchReply is any of the server's answers to a fast batch: a flow ack
// ({"type":"ack"}), a gap ({"type":"gap"}), a message's error
// ({"type":"err"}), or the PubAck that ends the batch (no type).
type batchReply struct {
	Type      string      `json:"type"`
	Seq       uint64      `json:"seq"`
	Msgs      uint16      `json:"msgs"`
	LastSeq   uint64      `json:"last_seq"`
	Error     *batchError `json:"error"`
	Stream    string      `json:"stream"`
	Count     uint64      `json:"count"`
	Duplicate bool        `json:"duplicate"`
}

type batchError struct {
	Code        int    `json:"code"`
	ErrCode     int    `json:"err_code"`
	Description string `json:"description"`
}

func (e *batchError) Error() string {
	return fmt.Sprintf("%s (%d, err_code %d)", e.Description, e.Code, e.ErrCode)
}

// errBatchIncomplete is wrapped by the error of a fast batch whose commit
// counted fewer messages than were sent.
var errBatchIncomplete = errors.New("fast batch incomplete")

// fastStream returns the stream of every entry of batch when they all go to
// one JetStream stream that allows fast batches, or "".
func (n *NATS) fastStream(ctx context.Context, now time.Time, batch []buffer.Entry) (string, error) {
	if n.careful || len(batch) < natsFastMinBatch || n.noFast {
		return "", nil
	}
	stream := ""
	for i := range batch {
		rt, err := n.route(ctx, now, batch[i].Rule)
		if err != nil {
			return "", n.routeErr(batch[i].Seq, err)
		}
		if !rt.batched || (stream != "" && rt.stream != stream) {
			return "", nil
		}
		stream = rt.stream
	}
	return stream, nil
}

// startFast subscribes to the fast batch inbox on first use.
func (n *NATS) startFast() (*natsFast, error) {
	if n.fast != nil {
		return n.fast, nil
	}
	f := &natsFast{inbox: n.nc.NewInbox(), ch: make(chan *nats.Msg, 1024)}
	sub, err := n.nc.ChanSubscribe(f.inbox+".>", f.ch)
	if err != nil {
		return nil, fmt.Errorf("subscribe to fast batch replies: %w", notConnected(err))
	}
	f.sub = sub
	f.hdr = nats.Header{jetstream.MsgIDHeader: []string{""}}
	n.fast = f
	return f, nil
}

// fastBatch is one fast batch in flight.
type fastBatch struct {
	n       *NATS
	f       *natsFast
	stream  string
	batch   []buffer.Entry
	sent    int    // messages published so far
	subject string // of the last one: pings and the end of an abandoned batch go there
	acked   uint64 // the highest batch position the server said it stored
	window  uint64 // messages per flow ack, as the server set it
	fault   error  // what the server said went wrong before the commit
	ended   bool   // the commit went out or the server ended the batch
}

// seq returns the entry seq of batch position pos (from 1), or 0.
func (b *fastBatch) seq(pos uint64) uint64 {
	if pos < 1 || pos > uint64(len(b.batch)) {
		return 0
	}
	return b.batch[pos-1].Seq
}

// handle takes one answer of this batch; done is true, with the batch's
// outcome, once the PubAck came.
func (b *fastBatch) handle(m *nats.Msg) (done bool, err error) {
	var r batchReply
	if err := json.Unmarshal(m.Data, &r); err != nil {
		b.ended = true
		return true, fmt.Errorf("fast batch answer %q: %w", m.Data, err)
	}
	switch r.Type {
	case "ack":
		b.acked, b.window = max(b.acked, r.Seq), max(uint64(r.Msgs), 1)
		return false, nil
	case "gap":
		// seq is the message that came, last_seq the one expected.
		b.fault = fmt.Errorf("seqs %d to %d lost on the way", b.seq(r.LastSeq), b.seq(r.Seq-1))
		return false, nil
	case "err":
		if r.Error != nil {
			b.fault = fmt.Errorf("seq %d: %w", b.seq(r.Seq), r.Error)
		}
		return false, nil
	case "":
	default:
		return false, nil
	}
	b.ended = true
	if r.Error != nil {
		return true, r.Error
	}
	if r.Count != uint64(len(b.batch)) {
		if b.fault == nil {
			b.fault = fmt.Errorf("count %d, duplicate %v", r.Count, r.Duplicate)
		}
		return true, fmt.Errorf("%w: stream %s stored %d of %d: %w", errBatchIncomplete, b.stream, r.Count, len(b.batch), b.fault)
	}
	if d, _ := b.f.sub.Dropped(); d > 0 {
		// An error reply may have been among them: the count alone does not
		// prove every message was stored (a store error leaves it as is).
		return true, fmt.Errorf("fast batch: %d replies dropped by the client", d)
	}
	return true, nil
}

// take handles the answers that have arrived, without waiting.
func (b *fastBatch) take() (done bool, err error) {
	for {
		select {
		case m := <-b.f.ch:
			if !strings.HasPrefix(m.Subject, b.f.pre) {
				continue // an earlier batch's
			}
			if done, err := b.handle(m); done {
				return true, err
			}
		default:
			return false, nil
		}
	}
}

// wait waits for an answer of this batch. A flow ack may be lost: each
// third of the ack timeout without one, a ping asks the server to say where
// the batch stands; after three, the batch fails.
func (b *fastBatch) wait(ctx context.Context) (done bool, err error) {
	f := b.f
	if f.timer == nil {
		f.timer = time.NewTimer(b.n.ackTimeout / 3)
	} else {
		f.timer.Reset(b.n.ackTimeout / 3)
	}
	defer f.timer.Stop()
	for pings := 0; ; {
		select {
		case m := <-f.ch:
			if !strings.HasPrefix(m.Subject, f.pre) {
				continue
			}
			return b.handle(m)
		case <-ctx.Done():
			return true, ctx.Err()
		case <-f.timer.C:
			if pings++; pings == 3 {
				return true, jetstream.ErrAsyncPublishTimeout
			}
			if err := b.publish(nil, nil, uint64(b.sent), 4); err != nil { // ping
				return true, err
			}
			f.timer.Reset(b.n.ackTimeout / 3)
		}
	}
}

// publish sends one message of the batch at position pos with operation op
// (0 start, 1 append, 2 commit, 3 end without a message, 4 ping).
func (b *fastBatch) publish(e *buffer.Entry, data []byte, pos uint64, op int) error {
	f := b.f
	f.reply = append(f.reply[:0], f.prefix...)
	f.reply = strconv.AppendUint(f.reply, natsFastFlow, 10)
	f.reply = append(f.reply, ".fail."...)
	f.reply = strconv.AppendUint(f.reply, pos, 10)
	f.reply = append(f.reply, '.')
	f.reply = strconv.AppendUint(f.reply, uint64(op), 10)
	f.reply = append(f.reply, ".$FI"...)
	// The reply subject and the Nats-Msg-Id are strings over buffers the
	// next message reuses: PublishMsg copies both into the connection's
	// buffer and keeps neither, and they are cleared once it returns. Two
	// allocations fewer per message, ~12% of the sending side's CPU per
	// record in benchuplink's fast batch runs (1.23-1.34 µs against
	// 1.42-1.50, alternating).
	f.msg = nats.Msg{Subject: b.subject, Reply: unsafeString(f.reply), Data: data}
	if e != nil {
		f.msg.Header = f.hdr
		f.hdr[jetstream.MsgIDHeader][0] = unsafeString(b.n.appendMsgID(e.Seq, e.Seq))
	}
	err := b.n.nc.PublishMsg(&f.msg)
	f.msg.Reply, f.hdr[jetstream.MsgIDHeader][0] = "", ""
	return err
}

// unsafeString returns b as a string without a copy; b must not change
// while the string is in use.
func unsafeString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// deliverFast publishes batch, every entry of which goes to stream, as one
// fast batch and waits for its PubAck.
func (n *NATS) deliverFast(ctx context.Context, now time.Time, stream string, batch []buffer.Entry) error {
	f, err := n.startFast()
	if err != nil {
		return err
	}
	for len(f.ch) > 0 { // answers to batches that were given up on
		<-f.ch
	}
	if d, _ := f.sub.Dropped(); d > 0 {
		// Dropped counts since the subscription began: start afresh so
		// that handle's check speaks of this batch only.
		_ = f.sub.Unsubscribe()
		n.fast = nil
		if f, err = n.startFast(); err != nil {
			return err
		}
	}
	f.prefix = append(append(append(f.prefix[:0], f.inbox...), '.'), nuid.Next()...)
	f.prefix = append(f.prefix, '.')
	f.pre = string(f.prefix)

	// Until the server's first flow ack says how often it will ack, assume
	// the least: with many batches open on the stream it acks every message,
	// and a publisher that ran ahead would overflow its reply channel.
	b := &fastBatch{n: n, f: f, stream: stream, batch: batch, window: 1}
	defer func() {
		if !b.ended && b.sent > 0 {
			// Given up on: end it, so that the server does not hold it
			// open (and slow other publishers) until its timeout.
			_ = b.publish(nil, nil, uint64(b.sent)+1, 3)
		}
	}()
	slab := n.slabFor(batch)
	for i := range batch {
		e := &batch[i]
		rt, err := n.route(ctx, now, e.Rule)
		if err != nil {
			return n.routeErr(e.Seq, err)
		}
		// Keep at most natsFastOutstanding flow windows unacknowledged
		// (ADR-50 allows 1 to 3; 2 is its default, 3 for longer round
		// trips: measured here, 3 sends 10-20% more per second).
		done, err := b.take()
		for !done && uint64(i) > b.acked+natsFastOutstanding*b.window {
			done, err = b.wait(ctx)
		}
		if done {
			return n.fastErr(e.Seq, stream, rt.subject, cmp.Or(err, errors.New("batch ended early")))
		}
		op := 1 // append
		switch {
		case i == len(batch)-1:
			op = 2 // commit
		case i == 0:
			op = 0 // start
		}
		start := len(slab)
		slab = n.env.Append(slab, e)
		b.subject = rt.subject
		if err := b.publish(e, slab[start:], uint64(i+1), op); err != nil {
			b.ended = true // the connection is gone, and the batch with it
			return n.publishErr(e.Seq, 1, rt.subject, err)
		}
		b.sent++
	}
	b.ended = true // the commit went out
	for {
		done, err := b.wait(ctx)
		if !done {
			continue
		}
		if err != nil {
			return n.fastErr(batch[0].Seq, stream, "", err)
		}
		n.slab = slab
		n.Published.Add(uint64(len(batch)))
		n.FastBatches.Add(1)
		return nil
	}
}

// fastErr builds the error of a failed fast batch and forgets the routes to
// its stream, so that the next delivery asks again whether it still allows
// fast batches.
func (n *NATS) fastErr(seq uint64, stream, subject string, err error) error {
	for r, rt := range n.routes {
		if rt.stream == stream {
			delete(n.routes, r)
		}
	}
	delete(n.streams, stream)
	if subject == "" {
		return fmt.Errorf("nats %s: fast batch from seq %d to stream %s: %w", n.name, seq, stream, notConnected(err))
	}
	return fmt.Errorf("nats %s: fast batch at seq %d to %s: %w", n.name, seq, subject, notConnected(err))
}
