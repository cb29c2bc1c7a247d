package main

import (
	"context"
	"errors"
	"net"
	"os"
	"strconv"
	"time"
)

// sdNotify sends a state ("READY=1", "WATCHDOG=1", "STOPPING=1") to
// systemd's notify socket. Without $NOTIFY_SOCKET (not run by systemd with
// Type=notify) it does nothing. The protocol is one datagram on a unix socket;
// no libsystemd, no cgo.
func sdNotify(state string) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	if path[0] == '@' {
		path = "\x00" + path[1:] // abstract namespace
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Write([]byte(state))
	return err
}

// watchdogInterval returns how often systemd expects WATCHDOG=1 (half its
// WatchdogSec, as sd_watchdog_enabled advises), or 0 when the watchdog is off
// or meant for another process.
func watchdogInterval() time.Duration {
	usec, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || usec <= 0 {
		return 0
	}
	if pid := os.Getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return 0
	}
	return time.Duration(usec) * time.Microsecond / 2
}

// errStalled is why the watchdog stops petting systemd.
var errStalled = errors.New("pipeline stalled")

// watchdog sends WATCHDOG=1 while alive reports the pipeline healthy, so a
// wedged agent is restarted by systemd rather than sitting there.
func watchdog(ctx context.Context, every time.Duration, alive func() error) error {
	if every <= 0 {
		return nil
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := alive(); err != nil {
				return err
			}
			if err := sdNotify("WATCHDOG=1"); err != nil {
				return err
			}
		}
	}
}
