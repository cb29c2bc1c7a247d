package main

import (
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
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
func progress(con *console, p sender, stop <-chan struct{}) {
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
	// Sent counts publishes handed to paho without error, duplicates
	// included; Acked the QoS 1 ones acknowledged; Errors the publishes that
	// failed or, at QoS 1, were not acknowledged.
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
	Seed        uint64

	// Offline counts turns of devices whose connection a storm had taken
	// down; Withheld turns a device let pass because of its set interval;
	// Duplicates the extra publishes of duplicated messages.
	Offline, Withheld, Duplicates uint64
	// Faults counts the events of the ground truth whose messages were
	// published, by kind; Malformed the malformed ones by detail.
	Faults, Malformed map[string]uint64
	Profiles          map[string]int
	// Storms counts connections taken down; Disconnects and Reconnects what
	// the connections then did.
	Storms, Disconnects, Reconnects uint64
	Commands, CommandsDropped       uint64
	LogRotations                    uint64
}

// Rate returns the achieved send rate in messages per second.
func (s summary) Rate() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Sent) / s.Elapsed.Seconds()
}

// Turns returns how many of the messages due were dealt with: sent, failed
// or deliberately withheld.
func (s summary) Turns() uint64 {
	return s.Sent - s.Duplicates + s.Errors + s.Offline + s.Withheld
}

// OK reports whether every message due was sent or deliberately withheld,
// without errors, and, at QoS 1, acknowledged.
func (s summary) OK() bool {
	if s.Errors > 0 || (s.Target > 0 && s.Sent-s.Duplicates+s.Offline+s.Withheld != s.Target) {
		return false
	}
	return s.QoS == 0 || s.Acked == s.Sent
}

// String returns the summary line; tools/bench parses it.
func (s summary) String() string {
	return fmt.Sprintf("sent=%d acked=%d errors=%d elapsed=%.3fs rate=%.1f/s",
		s.Sent, s.Acked, s.Errors, s.Elapsed.Seconds(), s.Rate())
}

// Extra returns a line with the faults, storms and commands of the run, or
// "" if there were none.
func (s summary) Extra() string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(s.Faults)) {
		fmt.Fprintf(&b, " %s=%d", k, s.Faults[k])
	}
	for _, kv := range []struct {
		k string
		v uint64
	}{
		{"offline", s.Offline}, {"withheld", s.Withheld}, {"storms", s.Storms},
		{"reconnects", s.Reconnects}, {"commands", s.Commands}, {"log_rotations", s.LogRotations},
	} {
		if kv.v > 0 {
			fmt.Fprintf(&b, " %s=%d", kv.k, kv.v)
		}
	}
	if b.Len() == 0 {
		return ""
	}
	return "faults and events:" + b.String()
}

// summaryJSON is the summary as --summary-json and --json write it.
type summaryJSON struct {
	OK              bool              `json:"ok"`
	Sent            uint64            `json:"sent"`
	Acked           uint64            `json:"acked"`
	Errors          uint64            `json:"errors"`
	FirstError      string            `json:"first_error,omitempty"`
	Target          uint64            `json:"target"`
	ElapsedS        float64           `json:"elapsed_s"`
	Rate            float64           `json:"rate"`
	QoS             byte              `json:"qos"`
	Seed            uint64            `json:"seed"`
	Interrupted     bool              `json:"interrupted"`
	Offline         uint64            `json:"offline"`
	Withheld        uint64            `json:"withheld"`
	Duplicates      uint64            `json:"duplicates"`
	Faults          map[string]uint64 `json:"faults"`
	Malformed       map[string]uint64 `json:"malformed"`
	Profiles        map[string]int    `json:"profiles"`
	Storms          uint64            `json:"storms"`
	Disconnects     uint64            `json:"disconnects"`
	Reconnects      uint64            `json:"reconnects"`
	Commands        uint64            `json:"commands"`
	CommandsDropped uint64            `json:"commands_dropped"`
	LogRotations    uint64            `json:"log_rotations"`
}

// JSON returns the summary in its JSON form.
func (s summary) JSON() summaryJSON {
	nz := func(m map[string]uint64) map[string]uint64 {
		if m == nil {
			return map[string]uint64{}
		}
		return m
	}
	return summaryJSON{
		OK: s.OK(), Sent: s.Sent, Acked: s.Acked, Errors: s.Errors, FirstError: s.FirstError,
		Target: s.Target, ElapsedS: s.Elapsed.Seconds(), Rate: s.Rate(), QoS: s.QoS, Seed: s.Seed,
		Interrupted: s.Interrupted, Offline: s.Offline, Withheld: s.Withheld, Duplicates: s.Duplicates,
		Faults: nz(s.Faults), Malformed: nz(s.Malformed), Profiles: s.Profiles,
		Storms: s.Storms, Disconnects: s.Disconnects, Reconnects: s.Reconnects,
		Commands: s.Commands, CommandsDropped: s.CommandsDropped, LogRotations: s.LogRotations,
	}
}
