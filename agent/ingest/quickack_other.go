//go:build !linux

package ingest

import "net"

// quickAcker: TCP_QUICKACK is Linux's; elsewhere reads are coalesced
// without it (see quickack_linux.go).
func quickAcker(net.Conn) func() { return nil }

// ackNower: see quickack_linux.go; elsewhere the kernel's delayed ACK rules.
func ackNower(net.Conn) func() { return nil }

// rawReads: see rawread_linux.go; elsewhere reads go through the runtime.
func rawReads(c net.Conn) net.Conn { return c }

// newAckTimer: no ACK timer runs elsewhere (ackNower is nil); time.AfterFunc's
// would do.
func newAckTimer(fire func()) delayTimer { return newGoTimer(fire) }
