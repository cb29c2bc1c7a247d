package main

// How the simulator's paho clients talk to the broker: no session store
// (clean sessions) and, on plain TCP, reads through a buffer and optional
// Nagle.

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/url"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
)

// noStore is a paho store that keeps nothing. The simulator's sessions are
// clean: paho would only put and delete each QoS 1 message in its memory
// store (a lock, a formatted key and a map entry per message) and drop
// them all on reconnect.
type noStore struct{}

var _ mqtt.Store = noStore{}

func (noStore) Open()                             {}
func (noStore) Put(string, packets.ControlPacket) {}
func (noStore) Get(string) packets.ControlPacket  { return nil }
func (noStore) All() []string                     { return nil }
func (noStore) Del(string)                        {}
func (noStore) Close()                            {}
func (noStore) Reset()                            {}

// bufferedConn reads through a buffer: paho reads each packet's fixed
// header and each length byte with a read of its own, three system calls
// per PUBACK where one read takes a whole run of them.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// isPlainTCP reports whether paho would open broker with a plain TCP dial
// (the schemes the simulator dials itself).
func isPlainTCP(broker string) bool {
	u, err := url.Parse(broker)
	return err == nil && (u.Scheme == "tcp" || u.Scheme == "mqtt")
}

// dialBuffered opens a TCP connection to the broker at u, read through a
// buffer, with Nagle's algorithm on if nagle is set.
func dialBuffered(u *url.URL, o mqtt.ClientOptions, nagle bool) (net.Conn, error) {
	c, err := dialTCP(context.Background(), u.Host, o.ConnectTimeout, nagle) // 0: no timeout, as paho's own dial
	if err != nil {
		return nil, err
	}
	return &bufferedConn{Conn: c, r: bufio.NewReaderSize(c, 4096)}, nil
}

// dialTCP opens a TCP connection to host, with Nagle's algorithm on if nagle
// is set (Go turns it off).
func dialTCP(ctx context.Context, host string, timeout time.Duration, nagle bool) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	c, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, err
	}
	if nagle {
		if err := c.(*net.TCPConn).SetNoDelay(false); err != nil {
			c.Close()
			return nil, fmt.Errorf("nagle: %w", err)
		}
	}
	return c, nil
}
