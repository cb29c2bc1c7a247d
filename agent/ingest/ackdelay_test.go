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
// by default) that writes a small timestamped message about every
// millisecond, and a brokerConn reading them with o; it returns the
// longest time a message took from its write to its read.
// msgSize and burst are W1's at 5,000 msg/s: telemetry messages of about
// 150 bytes, five each millisecond, one write each (as mosquitto forwards).
const (
	msgSize = 150
	burst   = 5
)

func nagleLatency(t *testing.T, o connOptions, messages int) time.Duration {
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
		if err := c.(*net.TCPConn).SetNoDelay(false); err != nil {
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
	return worst
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
	worst := nagleLatency(t, connOptions{coalesce: time.Millisecond, maxAckDelay: 5 * time.Millisecond}, messages)
	t.Logf("max_ack_delay 5ms: longest wait %v", worst)
	if worst > 25*time.Millisecond {
		t.Errorf("with max_ack_delay 5ms a message waited %v from write to read; want under 25ms", worst)
	}
	// What it fixes, for the log (the kernel's timing is not asserted).
	t.Logf("max_ack_delay 0: longest wait %v", nagleLatency(t, connOptions{coalesce: time.Millisecond}, messages))
}
