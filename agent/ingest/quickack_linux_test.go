package ingest

import (
	"crypto/tls"
	"net"
	"syscall"
	"testing"
)

// TestQuickAckerSetsTheSocketOption: on a TCP connection, and on the one
// under a TLS connection, the function sets TCP_QUICKACK.
func TestQuickAckerSetsTheSocketOption(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	for _, wrap := range []string{"tcp", "tls"} {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		var conn net.Conn = c
		if wrap == "tls" {
			conn = tls.Client(c, &tls.Config{InsecureSkipVerify: true})
		}
		raw, err := c.(*net.TCPConn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		get := func() (v int) {
			raw.Control(func(fd uintptr) { v, _ = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK) })
			return v
		}
		// Linux sets it on a fresh connection; clear it to see the set.
		raw.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 0) })
		if get() != 0 {
			t.Fatalf("%s: could not clear TCP_QUICKACK", wrap)
		}
		q := quickAcker(conn)
		if q == nil {
			t.Fatalf("%s: no quickAcker", wrap)
		}
		q()
		if get() != 1 {
			t.Errorf("%s: TCP_QUICKACK not set", wrap)
		}
	}
}
