package ingest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// TestRawReadConnReadsLikeTheConnection: what was written, a deadline, a
// read that gets what is written after it began, the peer's close (EOF)
// and a close of our own behave as on the net.Conn it wraps.
func TestRawReadConnReadsLikeTheConnection(t *testing.T) {
	client, server := tcpPair(t)
	c := rawReads(client)
	if _, ok := c.(*rawReadConn); !ok {
		t.Fatalf("rawReads of a TCP connection returned %T", c)
	}
	// max_ack_delay and quick_ack still find the socket under it.
	if ackNower(c) == nil || quickAcker(c) == nil {
		t.Fatal("ackNower or quickAcker is nil for a raw-read TCP connection")
	}
	if _, err := server.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 64)
	if n, err := io.ReadAtLeast(c, b, 5); err != nil || string(b[:n]) != "hello" {
		t.Fatalf("read %q, %v; want hello", b[:n], err)
	}
	// With nothing there a read waits in the poller: until its deadline,
	// or until data comes (the agent's reads from the broker wait there
	// all the time, in the end-to-end tests).
	c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	if _, err := c.Read(b); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline: %v; want os.ErrDeadlineExceeded", err)
	}
	c.SetReadDeadline(time.Time{})
	got := make(chan string, 1)
	go func() {
		n, err := io.ReadAtLeast(c, b, 5)
		got <- fmt.Sprint(string(b[:n]), err)
	}()
	if _, err := server.Write([]byte("later")); err != nil {
		t.Fatal(err)
	}
	if r := <-got; r != "later<nil>" {
		t.Fatalf("read %q; want later and no error", r)
	}
	server.Close()
	if n, err := c.Read(b); n != 0 || err != io.EOF {
		t.Fatalf("read after the peer closed: %d, %v; want 0, EOF", n, err)
	}

	client, _ = tcpPair(t)
	c = rawReads(client)
	done := make(chan error, 1)
	go func() {
		_, err := c.Read(b)
		done <- err
	}()
	c.Close() // whether the read is waiting yet or starts after it
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("read with a Close: %v; want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a read did not return after Close")
	}
}

// TestRawReadsLeavesOtherConnectionsAlone: a connection that is not TCP
// (a pipe here) is returned as it is.
func TestRawReadsLeavesOtherConnectionsAlone(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if got := rawReads(a); got != a {
		t.Fatalf("rawReads(pipe) = %T; want the pipe itself", got)
	}
}

// TestNewAckTimerIsATimerfd: on Linux the ACK timer is a timerfd (the
// Go timer is the fallback where timerfds are refused).
func TestNewAckTimerIsATimerfd(t *testing.T) {
	at := newAckTimer(func() {})
	defer at.Close()
	if _, ok := at.(*fdTimer); !ok {
		t.Fatalf("newAckTimer returned %T; want *fdTimer", at)
	}
}

// TestBrokerConnCloseReleasesTheAckTimer: a connection's timerfd (and the
// goroutine reading it) go with the connection; paho makes one per
// reconnect.
func TestBrokerConnCloseReleasesTheAckTimer(t *testing.T) {
	openFDs := func() int {
		es, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		return len(es)
	}
	o := connOptions{coalesce: time.Millisecond, maxAckDelay: 5 * time.Millisecond}
	before := openFDs()
	for range 20 {
		client, _ := tcpPair(t)
		bc := newBrokerConn(client, o, nil, nil)
		if _, ok := bc.ackTimer.(*fdTimer); !ok {
			t.Fatalf("ACK timer %T; want *fdTimer", bc.ackTimer)
		}
		bc.Close()
	}
	// tcpPair's server ends close when the test ends: 20 of them remain.
	if got := openFDs() - before; got != 20 {
		t.Fatalf("%d more open descriptors after 20 connections closed; want 20 (the peers' ends)", got)
	}
}
