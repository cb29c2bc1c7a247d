package ingest

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"
)

// rawReadConn is a TCP connection whose reads skip the Go scheduler's
// system-call bookkeeping: the socket is non-blocking and the runtime's
// poller still does the waiting (syscall.RawConn.Read), but the read(2)
// itself is a raw system call.
//
// Why: a read made through the syscall package tells the scheduler it may
// block, and when every P was idle (the agent between two ACK cycles) that
// wakes sysmon, the runtime's monitor thread, from its sleep; sysmon then
// polls every 20 µs, for a millisecond, until the agent is idle again. A
// read of a non-blocking socket returns at once, so there is nothing for
// the scheduler to hand off. See fdTimer, which wakes the agent for each
// ACK cycle without a Go timer: with both, W1 at 20k msg/s made ~2,000
// context switches per 8 s of load against ~4,400 before (README,
// "Benchmarks").
//
// Read is for one reader at a time (brokerConn's bufio.Reader, or the
// tls.Conn over it, which hold their own locks): the call's state is kept
// in the struct, as a closure per call would be allocated.
type rawReadConn struct {
	*net.TCPConn
	rc     syscall.RawConn
	readFn func(fd uintptr) bool // c.read, made once
	p      []byte                // the caller's buffer, for read
	n      int
	errno  syscall.Errno
}

// rawReads returns c with raw reads when it is a TCP connection, else c.
func rawReads(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	c2 := &rawReadConn{TCPConn: tc, rc: rc}
	c2.readFn = c2.read
	return c2
}

func (c *rawReadConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.p, c.n, c.errno = p, 0, 0
	err := c.rc.Read(c.readFn)
	c.p = nil
	switch {
	case err != nil:
		return 0, err // a *net.OpError already (closed, deadline)
	case c.errno != 0:
		return 0, &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError("read", c.errno)}
	case c.n == 0:
		return 0, io.EOF
	}
	return c.n, nil
}

// read runs with the descriptor; false: nothing to read yet, wait.
func (c *rawReadConn) read(fd uintptr) bool {
	c.n, c.errno = rawRead(fd, c.p)
	if c.errno == syscall.EAGAIN {
		c.errno = 0
		return false
	}
	return true
}

// rawRead is read(2) on fd as a raw system call, retried when a signal
// interrupts it.
func rawRead(fd uintptr, p []byte) (int, syscall.Errno) {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		if e != syscall.EINTR {
			return int(n), e
		}
	}
}
