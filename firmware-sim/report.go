package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// console serialises the simulator's stderr output: log lines, the progress
// line and the summary. On a terminal the progress line is rewritten in place
// with '\r'; anywhere else each progress report is a line of its own. Safe
// for concurrent use.
type console struct {
	mu   sync.Mutex
	w    io.Writer
	tty  bool
	open bool // a '\r' progress line is on screen and not yet ended
}

func newConsole(w io.Writer) *console {
	return &console{w: w, tty: isTerminal(w)}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// Logf writes one line prefixed "firmware-sim: ".
func (c *console) Logf(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.open {
		fmt.Fprintln(c.w)
		c.open = false
	}
	fmt.Fprintf(c.w, "firmware-sim: "+format+"\n", args...)
}

// Progress shows line as the current progress.
func (c *console) Progress(line string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tty {
		fmt.Fprintf(c.w, "\r%s\x1b[K", line)
		c.open = true
		return
	}
	fmt.Fprintln(c.w, line)
}

// progress reports the counters of p once a second until stop is closed.
func progress(con *console, p *publisher, stop <-chan struct{}) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	last, lastAt := p.Sent(), time.Now()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			sent := p.Sent()
			rate := float64(sent-last) / now.Sub(lastAt).Seconds()
			last, lastAt = sent, now
			con.Progress(fmt.Sprintf("firmware-sim: sent=%d acked=%d errors=%d rate=%.1f/s",
				sent, p.Acked(), p.Errors(), rate))
		}
	}
}

// summary is the outcome of a run.
type summary struct {
	Sent, Acked, Errors uint64
	// Target is the number of messages the run meant to send (from --count
	// and --duration); 0 means unbounded.
	Target uint64
	// Elapsed is the length of the send phase: from the first message's due
	// time to the end of the last message's slot (or of --duration), or to
	// the interruption. It excludes connecting and the final wait for acks.
	Elapsed     time.Duration
	QoS         byte
	Interrupted bool
	FirstError  string
}

// Rate returns the achieved send rate in messages per second.
func (s summary) Rate() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Sent) / s.Elapsed.Seconds()
}

// OK reports whether every message was sent and, at QoS 1, acknowledged.
func (s summary) OK() bool {
	if s.Errors > 0 || (s.Target > 0 && s.Sent != s.Target) {
		return false
	}
	return s.QoS == 0 || s.Acked == s.Sent
}

// String returns the summary line.
func (s summary) String() string {
	return fmt.Sprintf("sent=%d acked=%d errors=%d elapsed=%.3fs rate=%.1f/s",
		s.Sent, s.Acked, s.Errors, s.Elapsed.Seconds(), s.Rate())
}
