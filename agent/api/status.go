package api

import "time"

// Source gives the server a consistent view of the running agent. Status is
// called from the server's goroutines (each scrape, API request and rate
// sample), possibly concurrently, so it must be safe for concurrent use and
// cheap: a few atomic loads and read transactions.
type Source interface {
	Status() Status
}

// Status is the health document of a running gateway, served as JSON by
// /api/v1/status and read by /metrics. Counters are totals since the agent
// started; the Rate fields are filled in by the server from its samples.
type Status struct {
	Gateway  string    `json:"gateway"`
	Version  string    `json:"version"`
	Time     time.Time `json:"time"`    // when the document was taken
	Started  time.Time `json:"started"` // when the agent started
	Ready    bool      `json:"ready"`   // every input subscribed and the buffer open
	Inputs   []Input   `json:"inputs"`
	Rules    []Rule    `json:"rules"`
	Uplinks  []Uplink  `json:"uplinks"`
	Buffer   Buffer    `json:"buffer"`
	Pipeline Pipeline  `json:"pipeline"`
	Runtime  Runtime   `json:"runtime"`
}

// Input is one input's connection and counters.
type Input struct {
	Name       string `json:"name"`
	Connected  bool   `json:"connected"`
	Subscribed bool   `json:"subscribed"`
	// Received counts messages from the broker; Messages those the input
	// stage handled; DeadLetters those it rejected; Duplicates the
	// redeliveries it recognised and skipped.
	Received    uint64 `json:"received"`
	Messages    uint64 `json:"messages"`
	DeadLetters uint64 `json:"dead_letters"`
	Duplicates  uint64 `json:"duplicates"`
	Oversized   uint64 `json:"oversized"`
	Connects    uint64 `json:"connects"`
	// LastDeadLetter is the newest rejected message, nil when none.
	LastDeadLetter *DeadLetter `json:"last_dead_letter,omitempty"`
	// Rate is messages per second over the last RateWindow.
	Rate float64 `json:"rate"`
	// Log holds the file tailer's counters of a log input; nil for others.
	Log *LogInput `json:"log,omitempty"`
}

// LogInput is a log input's file tailer counters (totals since it started,
// but Open).
type LogInput struct {
	Lines       uint64 `json:"lines"`        // lines (or multiline records) read and handed on
	Bytes       uint64 `json:"bytes"`        // bytes read from files
	FilesOpened uint64 `json:"files_opened"` // files opened, rotated ones and copies included
	Open        int64  `json:"open"`         // files open now
	Rotations   uint64 `json:"rotations"`    // files that stopped matching (renamed away, deleted)
	Truncations uint64 `json:"truncations"`  // files read again from the start (copytruncate, replaced)
	LongLines   uint64 `json:"long_lines"`   // lines cut at max_line_bytes
	Resumed     uint64 `json:"resumed"`      // files resumed from a saved position
	Copies      uint64 `json:"copies"`       // copytruncate copies read for lines not yet read
	Uncovered   uint64 `json:"uncovered"`    // rotated files no saved position covered, read from the start
}

// Rule is one rule's counters.
type Rule struct {
	Name          string  `json:"name"`
	Processed     uint64  `json:"processed"`
	Filtered      uint64  `json:"filtered"`
	Late          uint64  `json:"late"`
	GroupsDropped uint64  `json:"groups_dropped"`
	Emitted       uint64  `json:"emitted"`
	InRate        float64 `json:"in_rate"`  // records processed per second
	OutRate       float64 `json:"out_rate"` // outputs emitted per second
}

// Uplink is one uplink's connection state and delivery counters.
type Uplink struct {
	Name        string     `json:"name"`
	State       string     `json:"state"` // starting, connected, backoff, stopped
	Connected   bool       `json:"connected"`
	Lag         uint64     `json:"lag"` // entries not yet acknowledged upstream
	Backlog     bool       `json:"backlog"`
	Delivered   uint64     `json:"delivered"`
	Failures    uint64     `json:"failures"`
	Rejected    uint64     `json:"rejected"` // entries refused for good (see the dead letters)
	LastError   string     `json:"last_error,omitempty"`
	LastErrorAt *time.Time `json:"last_error_at,omitempty"`
	Rate        float64    `json:"rate"` // entries delivered per second
}

// Buffer is the durable queue's depth, caps and counters.
type Buffer struct {
	Open             bool    `json:"open"`
	Records          int64   `json:"records"`
	Bytes            int64   `json:"bytes"`
	FileBytes        int64   `json:"file_bytes"`
	OldestAgeSeconds float64 `json:"oldest_age_seconds"`
	LastSeq          uint64  `json:"last_seq"`
	// Caps; 0 means none.
	MaxRecords    int64   `json:"max_records"`
	MaxBytes      int64   `json:"max_bytes"`
	MaxAgeSeconds float64 `json:"max_age_seconds"`
	Commits       uint64  `json:"commits"`
	Committed     uint64  `json:"committed"` // entries appended
	Deleted       uint64  `json:"deleted"`   // entries removed once every uplink acked
	Dropped       uint64  `json:"dropped"`   // entries dropped by the caps
	Full          uint64  `json:"full"`      // commits refused by the backpressure policy
	Compactions   uint64  `json:"compactions"`
	Drops         []Drop  `json:"drops,omitempty"`
}

// Drop counts entries the caps dropped, by rule, priority and reason.
type Drop struct {
	Rule     string `json:"rule"`
	Priority string `json:"priority"` // normal, high
	Reason   string `json:"reason"`   // full, age
	Count    uint64 `json:"count"`
}

// Pipeline is the group-commit loop's counters.
type Pipeline struct {
	Commits       uint64    `json:"commits"`
	CommitErrors  uint64    `json:"commit_errors"`
	Outputs       uint64    `json:"outputs"`
	CommitSeconds float64   `json:"commit_seconds"` // total time in commits
	LastTick      time.Time `json:"last_tick"`
	OutRate       float64   `json:"out_rate"` // outputs committed per second
}

// Runtime is the Go runtime's view of the process; the server fills it in.
type Runtime struct {
	Goroutines int    `json:"goroutines"`
	HeapBytes  uint64 `json:"heap_bytes"`
	Procs      int    `json:"procs"` // GOMAXPROCS now (limits.procs)
}

// DeadLetter is a sample of a message an input rejected.
type DeadLetter struct {
	Input  string    `json:"input"`
	Topic  string    `json:"topic"`
	Reason string    `json:"reason"`
	Sample string    `json:"sample"` // the payload's first bytes
	Time   time.Time `json:"time"`
}

// SourceFunc adapts a function to a Source.
type SourceFunc func() Status

// Status calls f.
func (f SourceFunc) Status() Status { return f() }
