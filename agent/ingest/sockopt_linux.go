//go:build linux && !386

package ingest

import (
	"syscall"
	"unsafe"
)

// setQuickAckRaw sets TCP_QUICKACK on fd with a raw system call, for the
// reason rawReadConn reads with one: the ACK timer's setsockopt is the
// first thing the agent does when it wakes, and through the syscall
// package it would wake sysmon too.
func setQuickAckRaw(fd uintptr, val int) {
	v := int32(val)
	syscall.RawSyscall6(syscall.SYS_SETSOCKOPT, fd, syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, uintptr(unsafe.Pointer(&v)), 4, 0)
}
