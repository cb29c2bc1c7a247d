//go:build !linux

package ingest

import "net"

// quickAcker: TCP_QUICKACK is Linux's; elsewhere reads are coalesced
// without it (see quickack_linux.go).
func quickAcker(net.Conn) func() { return nil }
