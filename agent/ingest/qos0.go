package ingest

import (
	"time"
	"unsafe"
)

// Why QoS 0 messages skip paho: for each message paho allocates a packet, a
// byte slice per field and a Message, and hands it from its reader goroutine
// to its comms and router goroutines before our handler sends it to the
// pipeline: three hand-offs and ~16 allocations a message. At 20k msg/s that
// was most of the agent's CPU, with the pipeline's own work a quarter of it.
// A QoS 0 message needs nothing paho keeps (no packet id, no ack, no
// session state), so brokerConn reads QoS 0 PUBLISH packets itself, from
// the buffer it already fills, and hands the pipeline each socket read's
// messages as one batch: one hand-off and two allocations per batch.
// Everything else (CONNACK, SUBACK, PINGRESP, QoS 1/2 PUBLISH and their
// flows) still goes to paho, which keeps the connection, the session, the
// keepalive and the reconnects. MQTT orders messages per topic and QoS only,
// so taking QoS 0 apart from QoS 1/2 keeps every order the broker promises.

// qos0Reader is brokerConn's state for the QoS 0 messages it reads itself.
type qos0Reader struct {
	deliver func(*Batch) // nil: paho reads every packet

	// left counts the bytes of the packet paho is reading that it has not
	// read yet; at 0 the stream is at a packet boundary.
	left int
	// passthrough: a fixed header was malformed. paho reads the rest of
	// the connection and fails on it, as it would without this reader.
	passthrough bool

	batch *Batch
	// free holds released batches: the reader fills them again rather than
	// allocating ~40 KB per socket read (fresh spans from the heap cost
	// page faults and zeroing: ~18% of the agent's CPU at 20k msg/s).
	free chan *Batch
}

// freeBatches is how many released batches a connection keeps for reuse:
// the pipeline holds one or two at a time.
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
		// PUBLISH (type 3) with QoS bits 0; a packet larger than the
		// buffer goes to paho, which reads it in pieces.
		if first&0xf6 != 0x30 || size > c.r.Size() {
			q.flush()
			return size, nil
		}
		pkt, err := c.peek(size)
		if err != nil {
			return 0, err
		}
		if !q.add(pkt[hdrLen:], c.r.Size()) {
			q.flush()
			return size, nil // malformed: paho fails the connection on it
		}
		c.r.Discard(size)
	}
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
// when they are not all buffered (getting them may block).
func (c *brokerConn) peek(n int) ([]byte, error) {
	if c.r.Buffered() < n {
		c.qos0.flush()
	}
	return c.r.Peek(n)
}

// add appends the message in a QoS 0 PUBLISH packet's variable header and
// payload to the batch; it returns false if the topic does not fit. A new
// batch's arena takes bufSize bytes: a batch holds what one buffer held.
func (q *qos0Reader) add(body []byte, bufSize int) bool {
	if len(body) < 2 {
		return false
	}
	end := 2 + (int(body[0])<<8 | int(body[1]))
	if end > len(body) {
		return false
	}
	b := q.batch
	if b == nil {
		b = q.newBatch(bufSize)
		q.batch = b
	}
	// The topic and payload alias the arena, which is not written again
	// until the batch is released. A batch never holds more than the
	// buffer did; should the arena still grow, the earlier items keep the
	// old one.
	start := len(b.arena)
	b.arena = append(b.arena, body[2:]...)
	topic := b.arena[start : start+end-2]
	b.Items = append(b.Items, Item{
		Topic:   unsafe.String(unsafe.SliceData(topic), len(topic)),
		Payload: b.arena[start+end-2 : len(b.arena) : len(b.arena)],
	})
	return true
}

// newBatch returns a released batch, or a new one.
func (q *qos0Reader) newBatch(bufSize int) *Batch {
	if q.free == nil {
		q.free = make(chan *Batch, freeBatches)
	}
	var b *Batch
	select {
	case b = <-q.free:
	default:
		b = &Batch{arena: make([]byte, 0, bufSize), free: q.free}
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
