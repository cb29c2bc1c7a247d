package uplink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

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
// the batch with an error that does not say which entry it was: the
// delivery after a failed one goes one message at a time with a JSON ack
// each, which tells the forwarder which entry to set aside; the next one is
// fast again.
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
	msg    nats.Msg // reused: PublishMsg copies it into the connection's buffer
	reply  []byte
	timer  *time.Timer
	prefix []byte // <inbox>.<batch id>. of the current batch
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
	f.msg.Header = nats.Header{jetstream.MsgIDHeader: []string{""}}
	n.fast = f
	return f, nil
}

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
	f.prefix = append(append(append(f.prefix[:0], f.inbox...), '.'), nuid.Next()...)
	f.prefix = append(f.prefix, '.')

	slab := n.slabFor(batch)
	var (
		acked  uint64                 // highest seq in the batch the server said it stored
		window = uint64(natsFastFlow) // messages per flow ack, as the server set it
		fault  error                  // what the server said went wrong before the commit
	)
	// handle takes one answer; it returns true with the batch's outcome once
	// the PubAck came.
	handle := func(m *nats.Msg) (bool, error) {
		if !strings.HasPrefix(m.Subject, string(f.prefix)) {
			return false, nil // an earlier batch's
		}
		var r batchReply
		if err := json.Unmarshal(m.Data, &r); err != nil {
			return true, fmt.Errorf("fast batch answer %q: %w", m.Data, err)
		}
		switch r.Type {
		case "ack":
			acked, window = max(acked, r.Seq), max(uint64(r.Msgs), 1)
			return false, nil
		case "gap":
			fault = fmt.Errorf("message %d lost on the way (server expected %d)", r.Seq, r.LastSeq)
			return false, nil
		case "err":
			if r.Error != nil {
				fault = fmt.Errorf("message %d: %w", r.Seq, r.Error)
			}
			return false, nil
		case "":
		default:
			return false, nil
		}
		if r.Error != nil {
			return true, r.Error
		}
		if r.Count != uint64(len(batch)) {
			if fault == nil {
				fault = fmt.Errorf("count %d, duplicate %v", r.Count, r.Duplicate)
			}
			return true, fmt.Errorf("%w: stream %s stored %d of %d: %w", errBatchIncomplete, stream, r.Count, len(batch), fault)
		}
		return true, nil
	}
	wait := func() (bool, error) {
		if f.timer == nil {
			f.timer = time.NewTimer(n.ackTimeout)
		} else {
			f.timer.Reset(n.ackTimeout)
		}
		defer f.timer.Stop()
		select {
		case m := <-f.ch:
			return handle(m)
		case <-ctx.Done():
			return true, ctx.Err()
		case <-f.timer.C:
			return true, jetstream.ErrAsyncPublishTimeout
		}
	}

	for i := range batch {
		e := &batch[i]
		rt, err := n.route(ctx, now, e.Rule)
		if err != nil {
			return n.routeErr(e.Seq, err)
		}
		// Keep at most natsFastOutstanding flow windows unacknowledged
		// (ADR-50 allows 1 to 3; 2 is its default, 3 for longer round
		// trips: measured here, 3 sends 10-20% more per second).
		for uint64(i) > acked+natsFastOutstanding*window {
			if done, err := wait(); done {
				return n.fastErr(e.Seq, stream, rt.subject, err)
			}
		}
		op := 1 // append
		switch {
		case i == len(batch)-1:
			op = 2 // commit
		case i == 0:
			op = 0 // start
		}
		f.reply = append(f.reply[:0], f.prefix...)
		f.reply = strconv.AppendUint(f.reply, natsFastFlow, 10)
		f.reply = append(f.reply, ".fail."...)
		f.reply = strconv.AppendUint(f.reply, uint64(i+1), 10)
		f.reply = append(f.reply, '.')
		f.reply = strconv.AppendUint(f.reply, uint64(op), 10)
		f.reply = append(f.reply, ".$FI"...)

		start := len(slab)
		slab = n.env.Append(slab, e)
		f.msg.Subject, f.msg.Reply, f.msg.Data = rt.subject, string(f.reply), slab[start:]
		f.msg.Header[jetstream.MsgIDHeader][0] = n.msgID(e.Seq, e.Seq)
		if err := n.nc.PublishMsg(&f.msg); err != nil {
			return n.publishErr(e.Seq, 1, rt.subject, err)
		}
	}
	for {
		done, err := wait()
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
	if subject == "" {
		return fmt.Errorf("nats %s: fast batch from seq %d to stream %s: %w", n.name, seq, stream, notConnected(err))
	}
	return fmt.Errorf("nats %s: fast batch at seq %d to %s: %w", n.name, seq, subject, notConnected(err))
}
