package ingest

import (
	"encoding/binary"
	"io"
	"net"
	"runtime"
	"testing"
	"time"
)

// nagleLatency runs a sender with Nagle's algorithm on (as mosquitto sends
// by default; off when nagle is false) that writes small timestamped
// messages, and a brokerConn reading them with o; it returns the longest
// time a message took from its write to its read, and the brokerConn's
// coalescing waits.
// msgSize and burst are W1's at 5,000 msg/s: telemetry messages of about
// 150 bytes, five each millisecond, one write each (as mosquitto forwards).
const (
	msgSize = 150
	burst   = 5
)

func nagleLatency(t *testing.T, o connOptions, messages int, nagle bool) (time.Duration, int) {
	return senderLatency(t, o, messages, nagle, 0)
}

// senderLatency is nagleLatency with a pause of the sender after its first
// message.
func senderLatency(t *testing.T, o connOptions, messages int, nagle bool, pause time.Duration) (time.Duration, int) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	sent := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			sent <- err
			return
		}
		defer c.Close()
		if err := c.(*net.TCPConn).SetNoDelay(!nagle); err != nil {
			sent <- err
			return
		}
		var b [msgSize]byte
		for i := range messages {
			binary.BigEndian.PutUint64(b[:], uint64(time.Now().UnixNano()))
			if _, err := c.Write(b[:]); err != nil {
				sent <- err
				return
			}
			if i == 0 && pause > 0 {
				time.Sleep(pause)
			}
			if i%burst == burst-1 {
				time.Sleep(time.Millisecond)
			}
		}
		sent <- nil
		io.Copy(io.Discard, c) // until the reader closes
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	bc := newBrokerConn(c, o, nil, nil)
	defer bc.Close()
	var worst time.Duration
	var b [msgSize]byte
	for i := range messages {
		if _, err := io.ReadFull(bc, b[:]); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		d := time.Since(time.Unix(0, int64(binary.BigEndian.Uint64(b[:]))))
		worst = max(worst, d)
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	return worst, bc.waits
}

// TestMaxAckDelayBoundsNagleHold: with reads coalesced, Linux delays the
// ACK of what was read (up to 40 ms) and a Nagle sender holds its next
// messages until then. The agent's ACK after max_ack_delay keeps every
// message's wait near that delay.
func TestMaxAckDelayBoundsNagleHold(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("TCP_QUICKACK is Linux's; elsewhere max_ack_delay does nothing")
	}
	const messages = 2000
	o := connOptions{coalesce: time.Millisecond, maxAckDelay: 5 * time.Millisecond}
	worst, waits := nagleLatency(t, o, messages, true)
	t.Logf("max_ack_delay 5ms: longest wait %v, %d coalescing waits", worst, waits)
	if worst > 25*time.Millisecond {
		t.Errorf("with max_ack_delay 5ms a message waited %v from write to read; want under 25ms", worst)
	}
	// While the broker holds its sends for our ACK, a wait before a read
	// is a wake-up for nothing: the ACK brings the next batch. 2,000
	// messages take 400 ms, ~80 ACK cycles of 5 ms; a wait per cycle
	// would be ~80.
	if waits > 40 {
		t.Errorf("%d coalescing waits with a Nagle sender; want at most 40 (the broker's holding makes them useless)", waits)
	}
	// A sender with TCP_NODELAY (other brokers) holds nothing back: reads
	// are still coalesced, about one wait per millisecond of the 400.
	worst, waits = nagleLatency(t, o, messages, false)
	t.Logf("no Nagle: longest wait %v, %d coalescing waits", worst, waits)
	if waits < 100 {
		t.Errorf("%d coalescing waits with a TCP_NODELAY sender; want 100 or more (reads must stay coalesced)", waits)
	}
	// A pause in traffic looks like a held send to the read after it; the
	// reads after that must find that nothing is held and coalesce again.
	worst, waits = senderLatency(t, o, messages, false, 20*time.Millisecond)
	t.Logf("no Nagle, 20 ms pause after the first message: longest wait %v, %d coalescing waits", worst, waits)
	if waits < 100 {
		t.Errorf("%d coalescing waits with a TCP_NODELAY sender after a pause; want 100 or more (a pause must not end coalescing)", waits)
	}
	// What it fixes, for the log (the kernel's timing is not asserted).
	worst, _ = nagleLatency(t, connOptions{coalesce: time.Millisecond}, messages, true)
	t.Logf("max_ack_delay 0: longest wait %v", worst)
}

// TestAlignedAckDelay: whole milliseconds plus the slack, never more than
// the slack past the due time, and what is due within a millisecond as it
// is.
func TestAlignedAckDelay(t *testing.T) {
	us := time.Microsecond
	for _, c := range []struct{ untilDue, want time.Duration }{
		{6800 * us, 6050 * us},
		{6050 * us, 6050 * us},
		{6020 * us, 6050 * us}, // 30 µs late, within the slack
		{7000 * us, 7050 * us},
		{1050 * us, 1050 * us},
		{1049 * us, 1049 * us},
		{300 * us, 300 * us},
		{0, 0},
		{-2 * time.Millisecond, 0},
	} {
		got := alignedAckDelay(c.untilDue)
		if got != c.want {
			t.Errorf("alignedAckDelay(%v) = %v; want %v", c.untilDue, got, c.want)
		}
		if got > max(c.untilDue, 0)+ackAlignSlack {
			t.Errorf("alignedAckDelay(%v) = %v: more than the slack past the due time", c.untilDue, got)
		}
	}
}

// ackConn is a brokerConn with only its ACK timer, whose ACKs are sent on
// the returned channel.
func ackConn(maxAckDelay time.Duration) (*brokerConn, chan time.Time) {
	acks := make(chan time.Time, 16)
	c := &brokerConn{maxAckDelay: maxAckDelay, ackNow: func() { acks <- time.Now() }}
	c.ackTimer = time.AfterFunc(time.Hour, c.sendAck)
	c.ackTimer.Stop()
	return c, acks
}

// TestAlignAckMovesTheACKOnlyEarlier: aligned at once after the read, the
// ACK goes within half a millisecond (and the slack) of max_ack_delay; a
// second alignment that would move it later leaves it; and an ACK is sent
// once per arming.
func TestAlignAckMovesTheACKOnlyEarlier(t *testing.T) {
	const delay = 5 * time.Millisecond
	c, acks := ackConn(delay)
	start := time.Now()
	c.armAck()
	c.alignAck()
	first := c.ackAt
	if lo, hi := start.Add(delay-time.Millisecond/2), start.Add(delay+time.Millisecond/2+ackAlignSlack); first.Before(lo) || first.After(hi) {
		t.Fatalf("aligned ACK at %v after the read; want %v to %v", first.Sub(start), lo.Sub(start), hi.Sub(start))
	}
	// 0.3 ms later as many whole milliseconds are left (5.2 of the 5.5),
	// so aligning again would move the ACK 0.3 ms later: it stays.
	for time.Since(start) < 300*time.Microsecond {
	}
	c.alignAck()
	if c.ackAt.After(first) {
		t.Fatalf("a second alignment moved the ACK later, from %v to %v", first.Sub(start), c.ackAt.Sub(start))
	}
	at := <-acks
	if at.Before(c.ackAt) {
		t.Fatalf("ACK sent at %v, before its time %v", at.Sub(start), c.ackAt.Sub(start))
	}
	if c.ackArmed.Load() {
		t.Fatal("still armed after the ACK")
	}
}

// TestAlignAckDoesNotResendAFiredACK: an alignment that comes after the
// timer fired (the reader saw it armed just before) sends nothing more.
func TestAlignAckDoesNotResendAFiredACK(t *testing.T) {
	c, acks := ackConn(time.Millisecond)
	c.armAck()
	<-acks
	c.ackAt = time.Now().Add(time.Hour) // as if armed long ago: any alignment is earlier
	c.ackDue = time.Now().Add(2 * time.Millisecond)
	c.alignAck()
	select {
	case <-acks:
		t.Fatal("an alignment after the ACK fired sent a second ACK")
	case <-time.After(20 * time.Millisecond):
	}
}
