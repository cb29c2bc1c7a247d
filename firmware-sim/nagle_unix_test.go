//go:build unix

package main

import (
	"net"
	"net/url"
	"syscall"
	"testing"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// TestDialBufferedNagle: --nagle turns TCP_NODELAY off on the connection;
// without it the connection keeps Go's default (on).
func TestDialBufferedNagle(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	u := &url.URL{Scheme: "tcp", Host: l.Addr().String()}
	for _, nagle := range []bool{false, true} {
		c, err := dialBuffered(u, *mqtt.NewClientOptions(), nagle)
		if err != nil {
			t.Fatal(err)
		}
		peer, err := l.Accept() // the dial completed in the backlog
		if err != nil {
			t.Fatal(err)
		}
		peer.Close()
		raw, err := c.(*bufferedConn).Conn.(*net.TCPConn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var nodelay int
		var serr error
		if err := raw.Control(func(fd uintptr) {
			nodelay, serr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_NODELAY)
		}); err != nil || serr != nil {
			t.Fatal(err, serr)
		}
		if got := nodelay == 0; got != nagle {
			t.Errorf("nagle %v: TCP_NODELAY %d", nagle, nodelay)
		}
		c.Close()
	}
}
