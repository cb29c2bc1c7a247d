package ingest

import (
	"io"
	"time"
)

// Why QoS 0 messages skip paho: for each message paho allocates a packet, a
// byte slice per field and a Message, and hands it from its reader goroutine
// to its comms and router goroutines before our handler sends it to the
// pipeline: three hand-offs and ~16 allocations a message. At 20k msg/s that
// was most of the agent's CPU, with the pipeline's own work a quarter of it.
// A QoS 0 message needs nothing paho keeps (no packet id, no ack, no
// session state), so brokerConn reads QoS 0 PUBLISH packets itself, from
// the buffer it already fills, and hands the pipeline each socket read's
// messages as one batch: one hand-off per read, and the batch memory is
// reused once the rules are done with it (Batch.Release).
// Everything else (CONNACK, SUBACK, PINGRESP, QoS 1/2 PUBLISH and their
// flows) still goes to paho, which keeps the connection, the session, the
// keepalive and the reconnects. QoS 0 messages keep their order, those
// larger than the buffer included (read here too). MQTT orders messages per
// topic and QoS only: a topic that mixes QoS 0 and QoS 1 messages can see
// the two interleaved differently than they came, which the broker does
// not promise either.

// qos0Reader is brokerConn's state for the QoS 0 messages it reads itself.
type qos0Reader struct {
	deliver func(*Batch) // nil: paho reads every packet

	// left counts the bytes of the packet paho is reading that it has not
	// read yet; at 0 the stream is at a packet boundary.
	left int
	// passthrough: the connection did not begin with a CONNACK accepting
	// it, or a fixed header was malformed. paho reads the rest of the
	// connection and fails on it, as it would without this reader.
	passthrough bool

	batch *Batch
	// free holds released batches: the reader fills them again rather than
	// allocating ~40 KB per socket read (fresh spans from the heap cost
	// page faults and zeroing: ~18% of the agent's CPU at 20k msg/s).
	free chan *Batch
}

// freeBatches is how many released batches a connection keeps for reuse
// (up to 32 KiB of arena each): the pipeline releases a batch at the end of
// the round of messages that took it, usually before the next read.
const freeBatches = 4

// nextForPaho reads the QoS 0 PUBLISH packets at the head of the stream and
// hands them to deliver until the packet there is one for paho, and returns
// that packet's length. It returns 0 with passthrough set for a fixed header
// that is not MQTT 3.1.1. Before anything that may block, and before paho
// gets a packet, the messages read so far are delivered.
func (c *brokerConn) nextForPaho() (int, error) {
	q := &c.qos0
	for {
		if c.r.Buffered() == 0 {
			q.flush()
			if err := c.fill(); err != nil {
				return 0, err
			}
		}
		first, hdrLen, size, err := c.fixedHeader()
		if err != nil {
			q.flush()
			return 0, err
		}
		if size == 0 {
			q.flush()
			q.passthrough = true
			return 0, nil
		}
		// PUBLISH (type 3) with QoS bits 0, DUP and RETAIN either way.
		if first&0xf6 != 0x30 {
			q.flush()
			return size, nil
		}
		if size > c.r.Size() {
			// Read here too, so that it keeps its place among its
			// topic's QoS 0 messages.
			q.flush()
			ok, err := c.readLarge(hdrLen, size)
			if err != nil {
				return 0, err
			}
			if !ok {
				return size, nil // malformed: paho fails the connection on it
			}
			continue
		}
		pkt, err := c.peek(size)
		if err != nil {
			return 0, err
		}
		if !q.add(pkt[hdrLen:], c.r.Buffered()) {
			q.flush()
			return size, nil // malformed: paho fails the connection on it
		}
		c.r.Discard(size)
	}
}

// readLarge reads a QoS 0 PUBLISH larger than the buffer into memory of its
// own and delivers it as a batch of one. It reads nothing and returns false
// if the topic does not fit in the packet.
func (c *brokerConn) readLarge(hdrLen, size int) (bool, error) {
	b, err := c.peek(hdrLen + 2)
	if err != nil {
		return false, err
	}
	end, ok := topicEnd(b[hdrLen:], size-hdrLen)
	if !ok {
		return false, nil
	}
	c.r.Discard(hdrLen)
	body := make([]byte, size-hdrLen)
	if _, err := io.ReadFull(c.r, body); err != nil {
		return false, err
	}
	c.armAck()
	c.qos0.deliver(&Batch{Received: time.Now(), Items: []Item{{Topic: unsafeString(body[2:end]), Payload: body[end:]}}})
	return true, nil
}

// fixedHeader peeks at the packet at the head of the stream and returns its
// first byte, the fixed header's length and the packet's whole length (0:
// a remaining length longer than MQTT's four bytes).
func (c *brokerConn) fixedHeader() (first byte, hdrLen, size int, err error) {
	b, err := c.peek(2)
	if err != nil {
		return 0, 0, 0, err
	}
	var n, shift int
	for i := 1; ; i++ {
		if i == 5 {
			return b[0], 0, 0, nil
		}
		if i >= len(b) {
			if b, err = c.peek(i + 1); err != nil {
				return 0, 0, 0, err
			}
		}
		n |= int(b[i]&0x7f) << shift
		if b[i]&0x80 == 0 {
			return b[0], i + 1, i + 1 + n, nil
		}
		shift += 7
	}
}

// peek returns the next n bytes, delivering the messages read so far first
// when they are not all buffered (getting them may block). The rest of a
// packet cut by the last read is read at once, without a coalescing wait.
func (c *brokerConn) peek(n int) ([]byte, error) {
	if c.r.Buffered() >= n {
		return c.r.Peek(n)
	}
	c.qos0.flush()
	b, err := c.r.Peek(n)
	if err == nil {
		c.armAck()
	}
	return b, err
}

// add appends the message in a QoS 0 PUBLISH packet's variable header and
// payload to the batch; it returns false if the topic does not fit.
// buffered, the bytes buffered from this packet on, is as much as the batch
// can take: it ends before the buffer is filled again.
func (q *qos0Reader) add(body []byte, buffered int) bool {
	end, ok := topicEnd(body, len(body))
	if !ok {
		return false
	}
	b := q.batch
	if b == nil {
		b = q.newBatch(buffered, len(body))
		q.batch = b
	}
	// The topic and payload alias the arena, which is not written again
	// until the batch is released. The arena holds what was buffered;
	// should it still grow, the earlier items keep the old one.
	start := len(b.arena)
	b.arena = append(b.arena, body[2:]...)
	b.Items = append(b.Items, Item{
		Topic:   unsafeString(b.arena[start : start+end-2]),
		Payload: b.arena[start+end-2 : len(b.arena) : len(b.arena)],
	})
	return true
}

// topicEnd returns where the topic of a PUBLISH ends in its variable
// header b, which begins with the topic's 2-byte length; ok is false when
// the topic does not fit in the size bytes of variable header and payload.
func topicEnd(b []byte, size int) (end int, ok bool) {
	if len(b) < 2 {
		return 0, false
	}
	end = 2 + (int(b[0])<<8 | int(b[1]))
	return end, end <= size
}

// newBatch returns a released batch, or a new one, with room for buffered
// bytes. A new one takes only that, so that batches queued behind a
// stalled pipeline hold about what they carry.
func (q *qos0Reader) newBatch(buffered, first int) *Batch {
	if q.free == nil {
		q.free = make(chan *Batch, freeBatches)
	}
	var b *Batch
	select {
	case b = <-q.free:
	default:
		b = &Batch{free: q.free, Items: make([]Item, 0, min(buffered/(2+first), 512))}
	}
	if cap(b.arena) < buffered {
		b.arena = make([]byte, 0, buffered)
	}
	b.Received = time.Now()
	return b
}

// flush hands the batch to deliver, which owns it until it releases it.
func (q *qos0Reader) flush() {
	if q.batch == nil {
		return
	}
	b := q.batch
	q.batch = nil
	q.deliver(b)
}
