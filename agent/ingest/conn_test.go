package ingest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// countingConn counts the writes that reach a real TCP connection.
type countingConn struct {
	net.Conn
	writes atomic.Int32
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// tcpPair returns the two ends of a loopback TCP connection, closed when
// the test ends.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	client, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// connPair returns a brokerConn over a loopback TCP connection with the
// given ack delay, the writes that reached its socket, and the peer's end.
func connPair(t *testing.T, delay time.Duration) (*brokerConn, *countingConn, net.Conn, *atomic.Uint64) {
	t.Helper()
	c, peer := tcpPair(t)
	cc := &countingConn{Conn: c}
	var acks atomic.Uint64
	bc := newBrokerConn(cc, connOptions{}, nil, &acks)
	bc.ackDelay = delay
	t.Cleanup(func() { bc.Close() })
	return bc, cc, peer, &acks
}

func puback(id uint16) []byte { return []byte{0x40, 2, byte(id >> 8), byte(id)} }

// readN reads exactly n bytes from the peer, failing after 5s.
func readN(t *testing.T, peer net.Conn, n int) []byte {
	t.Helper()
	peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, n)
	if _, err := io.ReadFull(peer, b); err != nil {
		t.Fatalf("peer read %d bytes: %v", n, err)
	}
	return b
}

// waitAcks waits for the count of acks written, which the writer adds
// after the peer could read them.
func waitAcks(t *testing.T, acks *atomic.Uint64, want uint64) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d acks counted", want), func() bool { return acks.Load() == want })
}

func write(t *testing.T, c net.Conn, p []byte) {
	t.Helper()
	if n, err := c.Write(p); err != nil || n != len(p) {
		t.Fatalf("write %x: %d, %v", p, n, err)
	}
}

// TestBrokerConnSendsAcksInOneWriteAfterTheDelay: 100 PUBACKs written one by
// one reach the socket in one write, once the delay after the first passed.
func TestBrokerConnSendsAcksInOneWriteAfterTheDelay(t *testing.T) {
	bc, cc, peer, acks := connPair(t, 200*time.Millisecond) // long enough that no stall of the test splits a batch
	var want []byte
	for i := range 100 {
		write(t, bc, puback(uint16(i+1)))
		want = append(want, puback(uint16(i+1))...)
	}
	if got := readN(t, peer, len(want)); !bytes.Equal(got, want) {
		t.Fatalf("peer got %x, want %x", got, want)
	}
	if n := cc.writes.Load(); n != 1 {
		t.Errorf("%d writes reached the socket, want 1", n)
	}
	waitAcks(t, acks, 100)
	// A second batch arms the timer again.
	write(t, bc, puback(7))
	write(t, bc, []byte{0x50, 2, 0, 8}) // PUBREC
	write(t, bc, []byte{0x70, 2, 0, 9}) // PUBCOMP
	if got, want := readN(t, peer, 12), []byte{0x40, 2, 0, 7, 0x50, 2, 0, 8, 0x70, 2, 0, 9}; !bytes.Equal(got, want) {
		t.Fatalf("peer got %x, want %x", got, want)
	}
	if n := cc.writes.Load(); n != 2 {
		t.Errorf("%d writes reached the socket, want 2", n)
	}
	waitAcks(t, acks, 103)
}

// TestBrokerConnOtherPacketsGoAtOnceWithTheAcksBeforeThem: with a delay
// that never ends, a PINGREQ and a PUBLISH are written at once, each in one
// write with the acks buffered before it, in order.
func TestBrokerConnOtherPacketsGoAtOnceWithTheAcksBeforeThem(t *testing.T) {
	bc, cc, peer, acks := connPair(t, time.Hour)
	write(t, bc, []byte{0xc0, 0}) // PINGREQ, nothing buffered
	if got := readN(t, peer, 2); !bytes.Equal(got, []byte{0xc0, 0}) {
		t.Fatalf("peer got %x", got)
	}
	write(t, bc, puback(1))
	write(t, bc, puback(2))
	write(t, bc, []byte{0xc0, 0})
	if got, want := readN(t, peer, 10), []byte{0x40, 2, 0, 1, 0x40, 2, 0, 2, 0xc0, 0}; !bytes.Equal(got, want) {
		t.Fatalf("peer got %x, want %x", got, want)
	}
	publish := []byte{0x32, 9, 0, 3, 'a', '/', 'b', 0, 5, 'h', 'i'} // QoS 1 PUBLISH a/b id 5 "hi"
	write(t, bc, puback(3))
	write(t, bc, publish)
	if got, want := readN(t, peer, 4+len(publish)), append(puback(3), publish...); !bytes.Equal(got, want) {
		t.Fatalf("peer got %x, want %x", got, want)
	}
	if n := cc.writes.Load(); n != 3 {
		t.Errorf("%d writes reached the socket, want 3", n)
	}
	waitAcks(t, acks, 3)
	// A 4-byte write that is no ack (a PUBLISH's length says 2, its type
	// is not an ack) is not held either.
	write(t, bc, []byte{0x30, 2, 0, 0})
	if got := readN(t, peer, 4); !bytes.Equal(got, []byte{0x30, 2, 0, 0}) {
		t.Fatalf("peer got %x", got)
	}
}

// TestBrokerConnFlushesAFullBuffer: acks that fill ackFlushBytes go out at
// once, without waiting for the delay.
func TestBrokerConnFlushesAFullBuffer(t *testing.T) {
	bc, cc, peer, acks := connPair(t, time.Hour)
	const n = ackFlushBytes / 4
	for i := range n {
		write(t, bc, puback(uint16(i)))
	}
	got := readN(t, peer, ackFlushBytes)
	if !bytes.Equal(got[len(got)-4:], puback(n-1)) {
		t.Fatalf("last ack %x, want %x", got[len(got)-4:], puback(n-1))
	}
	if w := cc.writes.Load(); w != 1 {
		t.Errorf("%d writes reached the socket, want 1", w)
	}
	waitAcks(t, acks, n)
}

// TestBrokerConnCloseSendsBufferedAcks: acks still waiting when the
// connection closes are written before it closes.
func TestBrokerConnCloseSendsBufferedAcks(t *testing.T) {
	bc, _, peer, acks := connPair(t, time.Hour)
	write(t, bc, puback(1))
	write(t, bc, puback(2))
	if err := bc.Close(); err != nil {
		t.Fatal(err)
	}
	peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(peer)
	if err != nil {
		t.Fatal(err)
	}
	if want := append(puback(1), puback(2)...); !bytes.Equal(got, want) {
		t.Fatalf("peer got %x before EOF, want %x", got, want)
	}
	waitAcks(t, acks, 2)
	if _, err := bc.Write(puback(3)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("write after close: %v, want net.ErrClosed", err)
	}
}

// TestBrokerConnFailedTimedFlushClosesTheConnection: when the timer's write
// fails, nobody is there to see its error, so the connection is closed (paho's
// reader fails and paho reconnects) and every later write fails too.
func TestBrokerConnFailedTimedFlushClosesTheConnection(t *testing.T) {
	bc, _, _, acks := connPair(t, time.Millisecond)
	// A deadline in the past makes the socket's next write fail.
	if err := bc.Conn.SetWriteDeadline(time.Unix(1, 0)); err != nil {
		t.Fatal(err)
	}
	write(t, bc, puback(1)) // buffered: no error yet
	bc.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := bc.Read(make([]byte, 1))
	if !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after the failed flush: %v, want net.ErrClosed", err)
	}
	if _, err := bc.Write(puback(2)); err == nil {
		t.Fatal("a write after the failed flush succeeded")
	}
	waitAcks(t, acks, 0)
}
