package rules

import (
	"fmt"
	"hash/fnv"
	"strings"
	"time"
)

// Spec is a rule as the agent's config describes it, already decoded: the
// structured front end fills it from YAML, ParseSQL from a SELECT statement,
// and Compile turns either into the same plan. Package rules never parses
// YAML.
type Spec struct {
	Name      string
	From      string // input the rule reads; informational here (the agent routes)
	Where     string // condition; empty passes every record
	GroupBy   []string
	Tumbling  time.Duration // shorthand for Window{Kind: Tumbling, Size: Tumbling}
	Window    Window
	EventTime EventTime
	Select    []SelectItem // in output order; {"*", "*"} passes the record's fields
	Having    string       // condition over the selected names and aggregates
	MaxGroups int          // cap on open groups; 0 means DefaultMaxGroups
	Drop      []string     // fields left out where "*" passes a record's fields

	Alert    *Alert        // raise and clear, one output per transition
	Pattern  []PatternStep // a sequence of conditions per group key
	Deadband *Deadband     // report by exception
	Dedup    bool          // drop outputs whose values equal the last emitted for the key
}

// SelectItem is one output value: a name and its expression.
type SelectItem struct {
	Name string
	Expr string
}

// WindowKind is the kind of a rule's window.
type WindowKind uint8

const (
	NoWindow WindowKind = iota
	Tumbling            // fixed, non-overlapping windows of Size, aligned to the Unix epoch
	Hopping             // windows of Size starting every Every (overlapping when Every < Size)
	Sliding             // on each record, the Size before it (one output per record)
	Session             // a group's records with less than Gap between them
	Count               // every Count records of a group
)

var windowNames = [...]string{"none", "tumbling", "hopping", "sliding", "session", "count"}

func (k WindowKind) String() string {
	if int(k) < len(windowNames) {
		return windowNames[k]
	}
	return fmt.Sprintf("window(%d)", k)
}

// Window is a rule's window.
type Window struct {
	Kind  WindowKind
	Size  time.Duration // tumbling, hopping, sliding
	Every time.Duration // hopping
	Gap   time.Duration // session
	Count int           // count
}

// EventTime says where a record's time comes from. Without Field it is the
// record's Time (arrival time, or what the input stage parsed).
//
// With event time a watermark trails the newest event time seen by Lateness;
// a record older than the watermark is late: it is counted (Stats.Late) and
// dropped, or with Late set to LateEmit emitted on its own (see
// Plan.Process), and windows close when the watermark passes their end.
// When Idle is set, Tick also moves the watermark to at least now - Idle, so
// windows close when devices stop sending.
type EventTime struct {
	Field    string        // unix seconds or milliseconds (a number), or an RFC 3339 string
	Lateness time.Duration // how far behind the newest a record may be
	Idle     time.Duration // 0: only records move the watermark
	Late     string        // what becomes of a late record: LateDrop (also "") or LateEmit
}

// What becomes of a late record (EventTime.Late).
const (
	LateDrop = "drop" // counted in Stats.Late and dropped
	LateEmit = "emit" // counted in Stats.Late and emitted as an output with Event "late"
)

// Alert turns a condition into raise and clear events per group key. Its
// conditions see the fields of the input record (rules without window) or the
// selected values and group keys (windowed rules).
type Alert struct {
	When      string        // raise when true ...
	For       time.Duration // ... on every record for at least this long (0: at once)
	ClearWhen string        // clear when true; empty: when When is false
}

// PatternStep is one step of a sequence matched per group key: the steps must
// match in order, each within Within of the step before (0: no bound). An
// Absent step matches when no record satisfies When within Within (for
// "door opened, then no motion within 5m"); it needs Within and cannot be the
// first step.
type PatternStep struct {
	When   string
	Within time.Duration
	Absent bool
}

// Deadband emits an output only when a value moved by more than Abs, or by
// more than Rel times its last emitted value, since the last output of the
// key, or when Heartbeat passed since it. With neither Abs nor Rel any change
// counts. Fields are the select names watched (empty: all); other values
// ride along.
type Deadband struct {
	Fields    []string
	Abs, Rel  float64
	Heartbeat time.Duration
}

// DefaultMaxGroups caps the groups of a window when the spec sets no cap.
const DefaultMaxGroups = 10000

// window returns the spec's window, with the Tumbling shorthand applied.
func (s *Spec) window() Window {
	if s.Window.Kind == NoWindow && s.Tumbling != 0 {
		return Window{Kind: Tumbling, Size: s.Tumbling}
	}
	return s.Window
}

// Fingerprint identifies the shape of the state a spec's plan keeps: two
// specs with the same fingerprint can restore each other's state. The name,
// input, group cap and outputs' routing do not count.
func (s *Spec) Fingerprint() uint64 {
	c := *s
	c.Name, c.From, c.MaxGroups = "", "", 0
	c.Window = s.window()
	c.Tumbling = 0
	a, d := c.Alert, c.Deadband
	c.Alert, c.Deadband = nil, nil
	// What becomes of late records is no part of the state; and EventTime
	// is printed as it was before it had Late, so that the fingerprints of
	// saved state stay the same.
	c.EventTime.Late = ""
	h := fnv.New64a()
	h.Write([]byte(strings.Replace(fmt.Sprintf("%#v|%#v|%#v", c, a, d), `, Late:""}`, "}", 1)))
	return h.Sum64()
}

// SpecError is an error in one field of a rule. Field is a path within the
// rule ("where", "select.avg_t", "window.size"); a PosError inside says where
// in the expression.
type SpecError struct {
	Rule  string
	Field string
	Err   error
}

func (e *SpecError) Error() string {
	if e.Rule == "" {
		return e.Field + ": " + e.Err.Error()
	}
	return "rule " + e.Rule + ": " + e.Field + ": " + e.Err.Error()
}
func (e *SpecError) Unwrap() error { return e.Err }
