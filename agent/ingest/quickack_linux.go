package ingest

import (
	"net"
	"syscall"
)

// quickAcker returns a function that turns on TCP_QUICKACK on c's socket,
// or nil when c is not a TCP connection.
//
// Read coalescing leaves data in the socket for a moment. Linux then delays
// its ACK (up to 40 ms), and a broker that sends without TCP_NODELAY (such
// as mosquitto by default: set_tcp_nodelay false) holds its next small
// packets back until that ACK, by Nagle's algorithm: measured here, a 1 ms
// wait before reads turned 1.3 ms of latency at 5,000 msg/s into 19 ms at the
// median and 44 ms at p99. Quick ACKs bring it back to 3 ms and 7 ms, but
// the broker then sends every message in a segment of its own, and W1 at
// 5k msg/s cost the agent 40 µs/msg instead of 14 (mosquitto 14 instead of
// 10): the delayed ACK was batching for both. So it is a setting
// (mqtt.quick_ack), off by default. Linux clears the flag by itself after a
// while, so it is set before each wait: one setsockopt per read.
func quickAcker(c net.Conn) func() { return setQuickAck(c, 1) }

// ackNower returns a function that sends the ACK Linux is delaying on c's
// socket now, if one is pending and everything received was read, and
// leaves delayed ACKs on (TCP_QUICKACK with an even value: the kernel acks
// and goes back to delaying). It is nil when c is not a TCP connection.
// See brokerConn.maxAckDelay.
//
// An odd value would also send it but leave the socket in quick-ACK mode for
// a while, so the broker would send a segment per message again: W1 at 5k
// cost the agent as much as the floor subscriber with it, against 0.78× of
// it with the even value.
func ackNower(c net.Conn) func() { return setQuickAck(c, 2) }

func setQuickAck(c net.Conn, val int) func() {
	if n, ok := c.(interface{ NetConn() net.Conn }); ok {
		c = n.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	set := func(fd uintptr) { setQuickAckRaw(fd, val) }
	return func() { _ = raw.Control(set) }
}
