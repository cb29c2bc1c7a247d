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

// TestAckTimerFiresOnceAfterTheDelay: the ACK timer calls its function
// once per Reset, not before the delay; a Reset before it fires moves it;
// after Close a Reset does nothing.
func TestAckTimerFiresOnceAfterTheDelay(t *testing.T) {
	fired := make(chan time.Time, 4)
	at := newAckTimer(func() { fired <- time.Now() })
	const d = 5 * time.Millisecond
	start := time.Now()
	at.Reset(d)
	if got := (<-fired).Sub(start); got < d {
		t.Fatalf("fired %v after Reset(%v)", got, d)
	}
	start = time.Now()
	at.Reset(time.Hour)
	at.Reset(d) // moves it: one expiry, after d
	if got := (<-fired).Sub(start); got < d || got > time.Hour/2 {
		t.Fatalf("fired %v after Reset(1h), Reset(%v)", got, d)
	}
	if err := at.Close(); err != nil {
		t.Fatal(err)
	}
	at.Reset(time.Millisecond)
	select {
	case <-fired:
		t.Fatal("fired again: once per Reset, and nothing after Close")
	case <-time.After(30 * time.Millisecond):
	}
}
