package main

// A lean MQTT 3.1.1 publisher for load tests (--raw): plain TCP, QoS 0 or
// 1, clean sessions, no reconnect. The send loop encodes each PUBLISH into
// its connection's buffer and writes the buffer before a message would not
// fit, when the loop is about to wait (Flush) or when the QoS 1 window is
// full; a reader goroutine per connection settles the PUBACKs in the order
// of the PUBLISHes, as mosquitto and mochi send them (MQTT 3.1.1 asks it of
// clients, 4.6; a broker that acked out of order would fail the
// connection, its messages in flight counted as errors).
//
// paho spends most of the simulator's CPU at high rates in its per-message
// goroutine hand-offs, tokens and one write per packet, and its packets
// package allocates for each packet it encodes or reads: this path does
// none of that per message (the CONNECT, once, goes through paho's
// packets), so that on one machine the publisher leaves the cores to the
// broker and the agent it loads.

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.mqtt.golang/packets"
)

const rawBufSize = 16 << 10

// rawPending is a QoS 1 message waiting for its PUBACK.
type rawPending struct {
	id  uint16
	dev int
	ts  int64
}

// rawConn is one connection. w, nextID and ends belong to the send
// loop; the reader goroutine owns r.
type rawConn struct {
	id     string
	nc     net.Conn
	w      *bufio.Writer
	r      *bufio.Reader
	nextID uint16
	ends   []int // QoS 0: where each message in w's buffer ends

	pending    chan rawPending // QoS 1, in publish order; its capacity is the window
	dead       chan struct{}   // closed when the connection failed
	deadOnce   sync.Once
	closing    atomic.Bool   // Close is waiting for the last PUBACKs
	drained    chan struct{} // closed by the reader when pending empties while closing
	drainOnce  sync.Once
	readerDone chan struct{}
}

// rawPublisher publishes over rawConns. Like publisher, its methods other
// than the counters are called from the send loop only.
type rawPublisher struct {
	counts
	broker *url.URL
	qos    byte
	nagle  bool
	conns  []*rawConn
	onAck  func(dev int, ts int64)
	logf   func(format string, args ...any)
	hdr    []byte // scratch for a PUBLISH's header

	writeTimeout time.Duration // for each write to a connection
}

// newRawPublisher prepares n connections to broker, a tcp:// or mqtt://
// URL (checked by the caller), with client IDs as newPublisher gives them.
func newRawPublisher(broker, clientID string, n int, qos byte, nagle bool, logf func(string, ...any)) (*rawPublisher, error) {
	u, err := url.Parse(broker)
	if err != nil {
		return nil, fmt.Errorf("broker %q: %w", broker, err)
	}
	p := &rawPublisher{broker: u, qos: qos, nagle: nagle, logf: logf, writeTimeout: writeTimeout}
	for i := range n {
		c := &rawConn{id: connID(clientID, n, i), dead: make(chan struct{}), drained: make(chan struct{}), readerDone: make(chan struct{})}
		if qos > 0 {
			c.pending = make(chan rawPending, MaxInflight)
		}
		p.conns = append(p.conns, c)
	}
	return p, nil
}

// Connect dials every connection and waits for its CONNACK.
func (p *rawPublisher) Connect(ctx context.Context) error {
	for i, c := range p.conns {
		if err := p.connect(ctx, c); err != nil {
			for _, c := range p.conns[:i] {
				c.closing.Store(true)
				p.kill(c, nil)
				<-c.readerDone
			}
			return fmt.Errorf("connect to %s as %s: %w", p.broker.Redacted(), c.id, err)
		}
	}
	return nil
}

func (p *rawPublisher) connect(ctx context.Context, c *rawConn) error {
	nc, err := dialTCP(ctx, p.broker.Host, connectTimeout, p.nagle)
	if err != nil {
		return err
	}
	c.nc, c.r = nc, bufio.NewReaderSize(nc, 4096)
	c.w = bufio.NewWriterSize(deadlineWriter{nc, p.writeTimeout}, rawBufSize)
	// CONNECT: MQTT 3.1.1, clean session, keepalive 0 (the send loop's
	// traffic is the only sign of life: there is no pinger).
	cp := packets.NewControlPacket(packets.Connect).(*packets.ConnectPacket)
	cp.ProtocolName, cp.ProtocolVersion, cp.CleanSession, cp.ClientIdentifier = "MQTT", 4, true, c.id
	nc.SetDeadline(time.Now().Add(connectTimeout))
	if err := cp.Write(nc); err != nil {
		nc.Close()
		return err
	}
	var scratch [maxRawPacket]byte
	typ, body, err := readPacket(c.r, scratch[:])
	if err == nil && (typ != 0x20 || len(body) != 2) {
		err = fmt.Errorf("want CONNACK, got packet type %#x", typ)
	}
	if err == nil && body[1] != 0 {
		err = fmt.Errorf("CONNACK return code %d", body[1])
	}
	if err != nil {
		nc.Close()
		return err
	}
	nc.SetDeadline(time.Time{})
	go p.read(c)
	return nil
}

// Publish writes one message to connection i's buffer. At QoS 1 it waits
// for a place in the window, writing the buffer first.
func (p *rawPublisher) Publish(ctx context.Context, i int, topic string, payload []byte, dev int, ts int64) error {
	c := p.conns[i]
	if c.failed() {
		return p.fail(ErrNotConnected)
	}
	var id uint16
	if p.qos > 0 {
		c.nextID++
		if c.nextID == 0 {
			c.nextID = 1
		}
		id = c.nextID
		pa := rawPending{id: id, dev: dev, ts: ts}
		select {
		case c.pending <- pa: // before the write: its PUBACK cannot come earlier
		default:
			if err := p.flush(c); err != nil {
				return p.fail(err)
			}
			select {
			case c.pending <- pa:
			case <-c.dead:
				return p.fail(ErrNotConnected)
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	h := append(p.hdr[:0], 0x30|p.qos<<1)
	n := 2 + len(topic) + len(payload)
	if p.qos > 0 {
		n += 2
	}
	h = appendLength(h, n)
	h = appendString(h, topic)
	if p.qos > 0 {
		h = binary.BigEndian.AppendUint16(h, id)
	}
	p.hdr = h
	// The buffer never writes by itself: what it holds is written (by
	// flush) before a message would not fit, and a message larger than the
	// whole buffer goes straight to the socket. So after a failed write,
	// c.ends tells which QoS 0 messages went and which did not.
	size := len(h) + len(payload)
	if c.w.Buffered() > 0 && c.w.Available() < size {
		if err := p.flush(c); err != nil {
			return p.lost(err) // counted by Close if it is a QoS 1 message
		}
	}
	if size > c.w.Available() {
		bufs := net.Buffers{h, payload}
		c.nc.SetWriteDeadline(time.Now().Add(p.writeTimeout))
		if _, err := bufs.WriteTo(c.nc); err != nil {
			p.broken(c, 0, err)
			return p.lost(err)
		}
	} else {
		c.w.Write(h) // fits: no write to the socket, no error
		c.w.Write(payload)
		if p.qos == 0 {
			c.ends = append(c.ends, c.w.Buffered())
		}
	}
	p.sent.Add(1)
	return nil
}

// Flush writes what every connection has buffered. The send loop calls it
// before it waits.
func (p *rawPublisher) Flush() {
	for _, c := range p.conns {
		if c.w.Buffered() > 0 {
			p.flush(c)
		}
	}
}

// lost returns err for a message that was not written: a QoS 0 one is
// counted as an error here, a QoS 1 one is in the window already and Close
// counts it.
func (p *rawPublisher) lost(err error) error {
	if p.qos == 0 {
		return p.fail(err)
	}
	return err
}

func (p *rawPublisher) flush(c *rawConn) error {
	if c.failed() {
		err := fmt.Errorf("connection %s lost", c.id)
		p.broken(c, 0, err)
		return err
	}
	before := c.w.Buffered()
	if err := c.w.Flush(); err != nil {
		p.broken(c, before-c.w.Buffered(), err) // bufio keeps what it did not write
		return err
	}
	c.ends = c.ends[:0]
	return nil
}

// broken marks c as failed after a write error or once it was lost, when
// the first written bytes of its buffer went to the socket: QoS 0 messages
// that end after them are counted as errors instead of sent, QoS 1 ones
// stay in the window for Close to count.
func (p *rawPublisher) broken(c *rawConn, written int, err error) {
	for _, end := range c.ends {
		if end > written {
			p.sent.Add(^uint64(0))
			p.fail(fmt.Errorf("write: %w", err))
		}
	}
	c.ends = c.ends[:0]
	c.w.Reset(io.Discard) // the connection is gone: what is buffered never goes
	p.kill(c, err)
}

// kill closes c's connection once, logging why.
func (p *rawPublisher) kill(c *rawConn, err error) {
	c.deadOnce.Do(func() {
		close(c.dead)
		c.nc.Close()
		if !c.closing.Load() {
			p.logf("connection %s to %s lost: %v", c.id, p.broker.Redacted(), err)
		}
	})
}

// read settles c's PUBACKs in order until the connection ends.
func (p *rawPublisher) read(c *rawConn) {
	defer close(c.readerDone)
	var scratch [maxRawPacket]byte
	for {
		typ, body, err := readPacket(c.r, scratch[:])
		if err == nil && (typ != 0x40 || len(body) != 2) {
			err = fmt.Errorf("unexpected packet type %#x (length %d)", typ, len(body))
		}
		var pa rawPending
		if err == nil {
			select {
			case pa = <-c.pending:
				if got := binary.BigEndian.Uint16(body); got != pa.id {
					err = fmt.Errorf("PUBACK for packet %d, want %d (the oldest in flight)", got, pa.id)
					p.fail(err) // pa is out of the window: Close will not count it
				}
			default:
				err = fmt.Errorf("PUBACK for packet %d with nothing in flight", binary.BigEndian.Uint16(body))
			}
		}
		if err != nil {
			p.kill(c, err)
			return
		}
		p.acked.Add(1)
		if p.onAck != nil {
			p.onAck(pa.dev, pa.ts)
		}
		if c.closing.Load() && len(c.pending) == 0 {
			c.drainOnce.Do(func() { close(c.drained) })
		}
	}
}

// Close writes what is buffered, waits up to grace for the PUBACKs still
// due, counts the rest as errors and disconnects.
func (p *rawPublisher) Close(grace time.Duration) {
	p.Flush()
	timer := time.NewTimer(grace)
	defer timer.Stop()
	for _, c := range p.conns {
		c.closing.Store(true)
		if p.qos > 0 && len(c.pending) > 0 {
			select {
			case <-c.drained:
			case <-c.dead:
			case <-timer.C:
				timer.Reset(0) // the others get no more time either
			}
		}
		lost := c.failed()
		if !lost {
			c.nc.SetWriteDeadline(time.Now().Add(p.writeTimeout))
			c.nc.Write([]byte{0xe0, 0}) // DISCONNECT
		}
		p.kill(c, nil)
		<-c.readerDone
		for range len(c.pending) {
			<-c.pending
			if lost {
				p.fail(ErrLostOnReconnect)
			} else {
				p.fail(ErrAckTimeout)
			}
		}
	}
}

// Down reports false: it is for connections a storm took down on purpose,
// whose messages are withheld. A raw connection that failed stays failed,
// and Publish counts each message offered to it as an error.
func (p *rawPublisher) Down(int) bool { return false }

// failed reports whether c's connection failed.
func (c *rawConn) failed() bool {
	select {
	case <-c.dead:
		return true
	default:
		return false
	}
}

// Flap is not supported on raw connections (the flags refuse storms).
func (p *rawPublisher) Flap(int, time.Duration) bool { return false }

// Reply is not supported: raw connections subscribe to no commands.
func (p *rawPublisher) Reply(string, []byte) {}

func (p *rawPublisher) ConnID(i int) string          { return p.conns[i].id }
func (p *rawPublisher) Disconnects() uint64          { return 0 }
func (p *rawPublisher) Reconnects() uint64           { return 0 }
func (p *rawPublisher) SetOnAck(fn func(int, int64)) { p.onAck = fn }

// deadlineWriter writes to a connection with a deadline for each write.
type deadlineWriter struct {
	nc      net.Conn
	timeout time.Duration
}

func (w deadlineWriter) Write(b []byte) (int, error) {
	w.nc.SetWriteDeadline(time.Now().Add(w.timeout))
	return w.nc.Write(b)
}

// appendLength appends an MQTT remaining length.
func appendLength(b []byte, n int) []byte {
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			return b
		}
	}
}

// appendString appends an MQTT UTF-8 string: a 2-byte length and s.
func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// maxRawPacket bounds the packets the reader accepts: it expects CONNACKs
// and PUBACKs only.
const maxRawPacket = 1 << 10

// readPacket reads one packet and returns its type (the fixed header's
// first byte without the flags) and body, read into buf (maxRawPacket
// bytes).
func readPacket(r *bufio.Reader, buf []byte) (byte, []byte, error) {
	h, err := r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, mul := 0, 1
	for i := 0; ; i++ {
		d, err := r.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		n += int(d&0x7f) * mul
		if d&0x80 == 0 {
			break
		}
		if i == 3 {
			return 0, nil, errors.New("malformed remaining length")
		}
		mul *= 128
	}
	if n > maxRawPacket {
		return 0, nil, fmt.Errorf("packet type %#x of %d bytes: only CONNACK and PUBACK are expected", h&0xf0, n)
	}
	body := buf[:n]
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, nil, err
	}
	return h & 0xf0, body, nil
}
