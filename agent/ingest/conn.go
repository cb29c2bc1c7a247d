package ingest

import (
	"bufio"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// ackFlushDelay is how long an ack written by paho waits for more acks
// before it goes to the socket. A commit acks its messages one after the
// other, a microsecond or two apart; paho writes each 4-byte PUBACK with its
// own write, which cost more of the agent's CPU at QoS 1 than the commit did.
// Waiting this long after the first buffered ack sends a commit's acks in a
// few writes. It delays acks only, never other packets (see brokerConn.Write),
// and adds at most this much to the time the broker's in-flight window is
// held by a commit (tens of milliseconds of reading and fsync).
const ackFlushDelay = 200 * time.Microsecond

// ackFlushBytes sends buffered acks at once when they reach this size
// (1024 PUBACKs), so the buffer stays small whatever the commit size.
const ackFlushBytes = 4 << 10

// brokerConn wraps the MQTT connection under paho. paho reads each packet's
// fixed header and every length byte with its own read; a bufio.Reader turns
// those into one syscall. With coalesce > 0 a read that would go to the socket
// first waits that long, so that messages arriving at a few thousand per
// second are read in batches rather than one wake-up each (DESIGN.md,
// "Measured levers").
//
// Writes of acks (PUBACK, PUBREC, PUBCOMP) are coalesced: see ackFlushDelay.
// Any other packet (CONNECT, SUBSCRIBE, PUBLISH, PINGREQ, DISCONNECT...) goes
// out at once, with the acks buffered before it in the same write, so order
// is kept and nothing but acks waits.
//
// It also reads the session-present flag of the CONNACK, which paho does not
// expose on reconnects, so the pipeline knows whether the broker's redelivery
// record still applies.
type brokerConn struct {
	net.Conn
	r         *bufio.Reader
	coalesce  time.Duration
	quickAck  func() // nil: not a TCP socket on Linux (see quickAcker)
	sniffed   bool
	onConnack func(sessionPresent bool)

	// With reads coalesced, the kernel's delayed ACK (up to 40 ms) and a
	// broker's Nagle (mosquitto's default) batch the broker's sends into one
	// segment per delayed ACK: cheap for both, but a message can wait 40 ms.
	// maxAckDelay after a socket read that returned data, ackNow sends the
	// pending ACK (if any), so the broker holds nothing back longer than
	// about that while sends stay batched. 0 or a nil ackNow: the kernel's
	// timing.
	maxAckDelay time.Duration
	ackNow      func()
	ackTimer    delayTimer
	ackArmed    atomic.Bool
	// holding: the read after the last wait found the socket empty, so
	// the broker holds its sends until our ACK (Nagle). While it does and
	// our ACK is due, the broker is doing the coalescing and a wait would
	// only add a wake-up: the ACK brings the next batch. W1 at 5k, 3 pairs
	// each: 0.37-0.42x of the floor against 0.43-0.46x with a wait before
	// every read. A broker with TCP_NODELAY is never found holding for
	// long, and its reads stay coalesced (TestMaxAckDelayBoundsNagleHold).
	holding bool
	waits   int // coalescing waits so far (for tests)

	wmu      sync.Mutex
	wbuf     []byte      // acks not yet written
	wtimer   *time.Timer // flushes wbuf ackFlushDelay after its first byte
	werr     error       // the first failed write: every later one fails too
	ackDelay time.Duration
	acks     *atomic.Uint64 // counts the acks written to the socket (nil: not counted)

	qos0 qos0Reader // QoS 0 messages, read here rather than by paho (see qos0.go)
}

// connOptions are the read settings of a brokerConn (see MQTTOptions).
type connOptions struct {
	coalesce    time.Duration
	quickAck    bool
	maxAckDelay time.Duration
	// qos0, when not nil, receives the QoS 0 messages, a socket read's
	// worth at a time; paho reads the other packets.
	qos0 func(*Batch)
}

func newBrokerConn(c net.Conn, o connOptions, onConnack func(bool), acks *atomic.Uint64) *brokerConn {
	bc := &brokerConn{Conn: c, r: bufio.NewReaderSize(c, 32<<10), coalesce: o.coalesce, onConnack: onConnack, ackDelay: ackFlushDelay, acks: acks}
	bc.qos0.deliver = o.qos0
	if o.coalesce > 0 && o.quickAck {
		bc.quickAck = quickAcker(c)
	}
	if o.coalesce > 0 && !o.quickAck && o.maxAckDelay > 0 {
		if bc.ackNow = ackNower(c); bc.ackNow != nil {
			bc.maxAckDelay = o.maxAckDelay
			bc.ackTimer = newAckTimer(bc.sendAck)
		}
	}
	return bc
}

// sendAck runs maxAckDelay after a socket read.
func (c *brokerConn) sendAck() {
	c.ackArmed.Store(false)
	c.ackNow()
}

func (c *brokerConn) Read(p []byte) (int, error) {
	if !c.sniffed {
		c.sniffed = true
		// CONNACK of MQTT 3.1.1 accepting the connection: 0x20, remaining
		// length 2, flags, return code 0.
		b, err := c.r.Peek(4)
		accepted := err == nil && b[0] == 0x20 && b[1] == 2 && b[3] == 0
		if accepted && c.onConnack != nil {
			c.onConnack(b[2]&1 == 1)
		}
		// Anything else is paho's, whole, to refuse: a broker that
		// publishes before accepting the connection never reaches the
		// pipeline.
		c.qos0.passthrough = !accepted
	}
	q := &c.qos0
	if q.deliver != nil && !q.passthrough && q.left == 0 {
		n, err := c.nextForPaho()
		if err != nil {
			return 0, err
		}
		q.left = n
	}
	if q.left > 0 && len(p) > q.left {
		p = p[:q.left]
	}
	if err := c.fill(); err != nil {
		return 0, err
	}
	n, err := c.r.Read(p)
	if q.left > 0 {
		q.left -= n
	}
	return n, err
}

// fill makes sure the buffer holds data. With coalescing, a read that has
// to go to the socket waits first (see the fields' comments).
func (c *brokerConn) fill() error {
	if c.r.Buffered() > 0 {
		return nil
	}
	if c.coalesce == 0 {
		_, err := c.r.Peek(1)
		return err
	}
	if c.quickAck != nil {
		c.quickAck() // else the broker's Nagle waits for our delayed ACK
	}
	if c.ackNow == nil {
		c.wait()
		_, err := c.r.Peek(1)
		return err
	}
	var err error
	if c.holding && c.ackArmed.Load() {
		_, err = c.r.Peek(1)
		// Data that came while our ACK was still to go was not held for
		// it (a TCP_NODELAY broker after a pause, or Nagle sending full
		// segments on a link with a small MSS): coalesce again.
		c.holding = !c.ackArmed.Load()
	} else {
		// A read that blocks for longer than the wait found the socket
		// empty: a Nagle broker holding its sends, or a pause in traffic.
		c.wait()
		woke := time.Now()
		_, err = c.r.Peek(1)
		c.holding = time.Since(woke) > c.coalesce
	}
	if err == nil {
		c.armAck()
	}
	return err
}

// armAck starts the maxAckDelay timer after a socket read that returned
// data, unless it runs already.
func (c *brokerConn) armAck() {
	if c.ackNow != nil && c.ackArmed.CompareAndSwap(false, true) {
		c.ackTimer.Reset(c.maxAckDelay)
	}
}

// delayTimer calls its function a delay after each Reset (see newAckTimer).
type delayTimer interface {
	Reset(time.Duration)
	Close() error
}

// goTimer is a delayTimer on time.AfterFunc.
type goTimer struct{ t *time.Timer }

func newGoTimer(fire func()) delayTimer {
	t := time.AfterFunc(time.Hour, fire)
	t.Stop()
	return goTimer{t}
}

func (g goTimer) Reset(d time.Duration) { g.t.Reset(d) }
func (g goTimer) Close() error          { g.t.Stop(); return nil }

func (c *brokerConn) wait() {
	c.waits++
	time.Sleep(c.coalesce)
}

// isAck reports whether p is one whole PUBACK, PUBREC or PUBCOMP of MQTT
// 3.1.1 (paho writes each packet with one Write).
func isAck(p []byte) bool {
	return len(p) == 4 && p[1] == 2 && (p[0] == 0x40 || p[0] == 0x50 || p[0] == 0x70)
}

func (c *brokerConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return 0, c.werr
	}
	ack := isAck(p)
	if ack && c.ackDelay > 0 {
		first := len(c.wbuf) == 0
		c.wbuf = append(c.wbuf, p...)
		if len(c.wbuf) >= ackFlushBytes {
			if err := c.flushLocked(); err != nil {
				return 0, err
			}
			return len(p), nil
		}
		if first {
			if c.wtimer == nil {
				c.wtimer = time.AfterFunc(c.ackDelay, c.timedFlush)
			} else {
				c.wtimer.Reset(c.ackDelay)
			}
		}
		return len(p), nil
	}
	if len(c.wbuf) == 0 {
		n, err := c.Conn.Write(p)
		if err != nil {
			c.werr = err
		} else if ack && c.acks != nil {
			c.acks.Add(1)
		}
		return n, err
	}
	// The acks before p and p in one write (a copy of p costs less than a
	// second syscall, and a tls.Conn would make a second record of it).
	acks := len(c.wbuf)
	c.wbuf = append(c.wbuf, p...)
	if err := c.flush(acks); err != nil {
		return 0, err
	}
	return len(p), nil
}

// flushLocked writes the buffered acks; c.wmu is held.
func (c *brokerConn) flushLocked() error { return c.flush(len(c.wbuf)) }

// flush writes wbuf, whose first ackBytes bytes are acks; c.wmu is held.
func (c *brokerConn) flush(ackBytes int) error {
	if len(c.wbuf) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.wbuf)
	c.wbuf = c.wbuf[:0]
	if cap(c.wbuf) > 2*ackFlushBytes {
		c.wbuf = nil // a large publish went through: do not keep its room
	}
	c.stopTimer()
	if err != nil {
		c.werr = err
		return err
	}
	if c.acks != nil {
		c.acks.Add(uint64(ackBytes / 4))
	}
	return nil
}

func (c *brokerConn) stopTimer() {
	if c.wtimer != nil {
		c.wtimer.Stop()
	}
}

// timedFlush runs on the timer. paho does not see its error, so a failed
// write closes the connection: paho's reader fails, and paho reconnects
// (the acks lost with it are redelivered by the broker, as after any drop).
func (c *brokerConn) timedFlush() {
	c.wmu.Lock()
	err := c.flushLocked()
	c.wmu.Unlock()
	if err != nil {
		c.Conn.Close()
	}
}

// Close sends the buffered acks, unless a write is under way (paho closes
// the connection to end a write that is stuck), and closes the connection.
func (c *brokerConn) Close() error {
	if c.ackTimer != nil {
		c.ackTimer.Close()
	}
	if c.wmu.TryLock() {
		if len(c.wbuf) > 0 && c.werr == nil {
			c.Conn.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
			c.flushLocked()
		}
		c.stopTimer()
		c.werr = net.ErrClosed
		c.wmu.Unlock()
	}
	return c.Conn.Close()
}
