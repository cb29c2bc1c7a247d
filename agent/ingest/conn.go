package ingest

import (
	"bufio"
	"net"
	"time"
)

// readConn wraps the MQTT connection under paho. paho reads each packet's
// fixed header and every length byte with its own read; a bufio.Reader turns
// those into one syscall. With coalesce > 0 a read that would go to the socket
// first waits that long, so that messages arriving at a few thousand per
// second are read in batches rather than one wake-up each (DESIGN.md,
// "Measured levers").
//
// It also reads the session-present flag of the CONNACK, which paho does not
// expose on reconnects, so the pipeline knows whether the broker's redelivery
// record still applies.
type readConn struct {
	net.Conn
	r         *bufio.Reader
	coalesce  time.Duration
	quickAck  func() // nil: not a TCP socket on Linux (see quickAcker)
	sniffed   bool
	onConnack func(sessionPresent bool)
}

func newReadConn(c net.Conn, coalesce time.Duration, quickAck bool, onConnack func(bool)) *readConn {
	rc := &readConn{Conn: c, r: bufio.NewReaderSize(c, 32<<10), coalesce: coalesce, onConnack: onConnack}
	if coalesce > 0 && quickAck {
		rc.quickAck = quickAcker(c)
	}
	return rc
}

func (c *readConn) Read(p []byte) (int, error) {
	if !c.sniffed {
		c.sniffed = true
		// CONNACK of MQTT 3.1.1: 0x20, remaining length 2, flags, return code.
		if b, err := c.r.Peek(4); err == nil && b[0] == 0x20 && b[1] == 2 && b[3] == 0 && c.onConnack != nil {
			c.onConnack(b[2]&1 == 1)
		}
	}
	if c.coalesce > 0 && c.r.Buffered() == 0 {
		if c.quickAck != nil {
			c.quickAck() // else the broker's Nagle waits for our delayed ACK
		}
		time.Sleep(c.coalesce)
	}
	return c.r.Read(p)
}
