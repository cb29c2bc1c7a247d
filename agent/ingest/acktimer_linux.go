package ingest

import (
	"os"
	"syscall"
	"time"
	"unsafe"
)

// fdTimer is the ACK timer on Linux: a timerfd that the runtime's poller
// watches, read by a goroutine of its own, which calls fire once per
// expiry. Setting it and reading it are raw system calls.
//
// Why not time.AfterFunc: with nothing to run, Go's netpoller sleeps until
// its next timer in whole milliseconds rounded down (epoll_wait's
// timeout), so an ACK due 6.8 ms after the agent went idle woke it at 6 ms,
// for nothing, and again at 7; and sysmon, the runtime's monitor thread,
// sleeps until the next timer too, so it woke with every ACK cycle. A
// timerfd wakes the agent once, to the nanosecond, through the poller, and
// is no Go timer for sysmon to wait for. Raw system calls, here and in
// rawReadConn, keep the ACK cycle from waking sysmon another way: a system
// call made through the syscall package wakes it when it sleeps.
// W1 at 20k msg/s: see the README's "Benchmarks".
//
// Reset is for one goroutine at a time (brokerConn's reader).
type fdTimer struct {
	f     *os.File
	rc    syscall.RawConn
	fire  func()
	spec  itimerspec    // for set
	setFn func(uintptr) // t.set, made once
}

// itimerspec is struct itimerspec of timerfd_settime(2).
type itimerspec struct {
	interval, value syscall.Timespec
}

const (
	clockMonotonic = 1
	tfdNonblock    = syscall.O_NONBLOCK
	tfdCloexec     = syscall.O_CLOEXEC
)

// newAckTimer returns a stopped timer that calls fire a delay after each
// Reset: an fdTimer, or time.AfterFunc's where timerfds are refused.
func newAckTimer(fire func()) delayTimer {
	fd, _, e := syscall.RawSyscall(syscall.SYS_TIMERFD_CREATE, clockMonotonic, tfdNonblock|tfdCloexec, 0)
	if e != 0 {
		return newGoTimer(fire)
	}
	f := os.NewFile(fd, "ack-timerfd")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return newGoTimer(fire)
	}
	t := &fdTimer{f: f, rc: rc, fire: fire}
	t.setFn = t.set
	go t.run()
	return t
}

func (t *fdTimer) run() {
	var n [8]byte // the expiry count, which only says that it expired
	var errno syscall.Errno
	read := func(fd uintptr) bool {
		_, errno = rawRead(fd, n[:])
		return errno != syscall.EAGAIN
	}
	// Until Close; a timerfd that fails a read (it cannot, short of a bad
	// descriptor) leaves the ACKs to the kernel's delayed ACK.
	for t.rc.Read(read) == nil && errno == 0 {
		t.fire()
	}
}

// Reset arms the timer d from now; an expiry not yet read is dropped.
// After Close it does nothing (Control holds the descriptor open while it
// runs, and fails once it is closed).
func (t *fdTimer) Reset(d time.Duration) {
	t.spec.value = syscall.NsecToTimespec(int64(max(d, 1))) // 0 would disarm it
	_ = t.rc.Control(t.setFn)
}

func (t *fdTimer) set(fd uintptr) {
	syscall.RawSyscall6(syscall.SYS_TIMERFD_SETTIME, fd, 0, uintptr(unsafe.Pointer(&t.spec)), 0, 0, 0)
}

// Close stops the timer and its goroutine.
func (t *fdTimer) Close() error { return t.f.Close() }
