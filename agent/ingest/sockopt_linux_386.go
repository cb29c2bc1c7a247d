package ingest

import "syscall"

// setQuickAckRaw: 386 has no setsockopt system call of its own (it goes
// through socketcall), so it takes the syscall package's path.
func setQuickAckRaw(fd uintptr, val int) {
	_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, val)
}
