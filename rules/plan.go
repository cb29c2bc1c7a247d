package rules

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/sluiceio/sluice/rules/ml"
)

// Stats are a plan's counters. They are plain fields written by the goroutine
// that drives the plan; read them from that goroutine or after it stopped.
type Stats struct {
	Processed     uint64 // records given to Process
	Filtered      uint64 // records that failed where
	GroupsDropped uint64 // records dropped because the group cap bit
	Late          uint64 // records older than the watermark (event time only)
	Emitted       uint64 // outputs
	NoEventTime   uint64 // records whose event-time field was missing or unreadable (arrival time used)
	Suppressed    uint64 // outputs held back by deadband or dedup
}

// Plan is a compiled rule.
//
// A plan is driven by one goroutine: Process, Tick, Flush, Checkpoint and
// Restore must not be called concurrently, so a plan does not lock.
//
// Outputs appended by Process, Tick and Flush point into memory the plan
// reuses: their Key and Values (and the strings of a stateless rule's values,
// which may point into the record) stay valid until the next call that is
// given an empty out. A caller that appends several calls' outputs to one
// slice keeps them all valid; one that keeps an output longer uses
// Output.Clone.
type Plan struct {
	name      string
	fp        uint64
	where     evalFn
	keys      []string
	items     []SelectItem
	fns       []evalFn // nil where the item is "*"
	drop      []string
	aggs      []aggSlot
	having    evalFn
	maxGroups int

	win      Window
	wins     windower // nil for a rule without window
	stateful bool     // keeps state: a window, an alert, a pattern or a deadband

	timeField      string
	emitLate       bool // EventTime.Late is LateEmit
	lateness, idle int64
	wm, maxT       int64 // watermark and newest event time, unix ns
	started        bool  // a record set wm

	alert   *alertOp
	pattern *patternOp
	band    *deadbandOp
	online  *onlineOp // learning functions' state per group key
	models  map[string]*ml.Model

	// State changes since the last checkpoint (see state.go).
	dirty      []stateItem
	dead       []string
	live       int
	tombstones int
	reset      bool
	metaDirty  bool
	// checkpointBytes sizes the next checkpoint's values, which share one
	// allocation: the last one's size.
	checkpointBytes int

	kid  int32     // key number of the record in Process, from a Set; -1: none
	kidx *keyIndex // the Set's index the numbers come from

	// Scratch, reused so that Process does not allocate.
	keyBuf  []byte
	arena   []Field
	condRec Record
	selRec  Record
	view    aggView

	Stats Stats
}

// Compile checks a spec and compiles it into a plan. Errors are *SpecError
// naming the rule and the field, with a *PosError inside for expressions.
// A rule that calls predict or classify needs CompileWith and its models.
func Compile(s Spec) (*Plan, error) { return CompileWith(s, Options{}) }

// Options is what a rule may use besides its spec.
type Options struct {
	// Models are the models predict("name", ...) and classify("name", ...)
	// call, by name (see ml.ParseModel). A plan keeps the ones it calls;
	// models are read-only, so plans may share them.
	Models map[string]*ml.Model
}

// CompileWith is Compile with options.
func CompileWith(s Spec, o Options) (*Plan, error) {
	p, err := compile(s, o)
	if err != nil {
		var se *SpecError
		if errors.As(err, &se) {
			se.Rule = s.Name
		}
		return nil, err
	}
	return p, nil
}

func specErr(field, format string, args ...any) error {
	return &SpecError{Field: field, Err: fmt.Errorf(format, args...)}
}

func compile(s Spec, o Options) (*Plan, error) {
	if s.Name == "" {
		return nil, specErr("name", "is required")
	}
	w := s.window()
	p := &Plan{name: s.Name, fp: s.Fingerprint(), keys: s.GroupBy, items: s.Select, drop: s.Drop,
		maxGroups: s.MaxGroups, win: w, timeField: s.EventTime.Field,
		lateness: int64(s.EventTime.Lateness), idle: int64(s.EventTime.Idle), models: o.Models, kid: -1}
	if p.maxGroups <= 0 {
		p.maxGroups = DefaultMaxGroups
	}
	if s.Where != "" {
		n, err := parseExpr(s.Where)
		if err == nil {
			c := &compiler{src: s.Where, models: p.models}
			p.where, err = c.compile(n)
		}
		if err != nil {
			return nil, &SpecError{Field: "where", Err: err}
		}
	}
	if err := p.compileWindow(s, w); err != nil {
		return nil, err
	}
	windowed := p.wins != nil
	if s.EventTime.Lateness < 0 || s.EventTime.Idle < 0 {
		return nil, specErr("event_time", "lateness and idle must not be negative")
	}
	if s.EventTime.Field == "" && (s.EventTime.Lateness > 0 || s.EventTime.Idle > 0) {
		return nil, specErr("event_time.field", "is required with lateness or idle")
	}
	switch s.EventTime.Late {
	case "", LateDrop:
	case LateEmit:
		if s.EventTime.Field == "" {
			return nil, specErr("event_time.field", "is required with late: %s (only event time makes records late)", LateEmit)
		}
		p.emitLate = true
	default:
		return nil, specErr("event_time.late", "must be %q or %q, got %q", LateDrop, LateEmit, s.EventTime.Late)
	}
	if windowed && len(s.Select) == 0 {
		return nil, specErr("select", "a windowed rule needs at least one select item")
	}
	post := s.Alert != nil || len(s.Pattern) > 0 || s.Deadband != nil || s.Dedup
	seen := map[string]bool{}
	for _, it := range s.Select {
		field := "select." + it.Name
		if it.Name == "" {
			return nil, specErr("select", "an item has no name")
		}
		if it.Expr == "*" || it.Name == "*" {
			if windowed {
				return nil, specErr("select", "* passes a record's fields, which a windowed rule has not")
			}
			p.fns = append(p.fns, nil)
			continue
		}
		if seen[it.Name] {
			return nil, specErr(field, "duplicate name")
		}
		seen[it.Name] = true
		n, err := parseExpr(it.Expr)
		if err != nil {
			return nil, &SpecError{Field: field, Err: err}
		}
		c := &compiler{src: it.Expr, aggs: &p.aggs, keys: s.GroupBy, aggMode: windowed, plan: p, models: p.models}
		fn, err := c.compile(n)
		if err != nil {
			return nil, &SpecError{Field: field, Err: err}
		}
		p.fns = append(p.fns, fn)
	}
	if !windowed && len(s.GroupBy) > 0 && !post && p.online == nil {
		return nil, specErr("group_by", "needs a window (or an alert, pattern, deadband or a learning function)")
	}
	if s.Having != "" {
		if !windowed && p.online == nil {
			return nil, specErr("having", "needs a window; use where")
		}
		n, err := parseExpr(s.Having)
		if err != nil {
			return nil, &SpecError{Field: "having", Err: err}
		}
		c := &compiler{src: s.Having, aggs: &p.aggs, keys: s.GroupBy, names: p.names(), aggMode: true, plan: p, models: p.models}
		if !windowed {
			// A rule whose select learns (anomaly_score, ...) filters its
			// outputs on what was learned: where cannot see those values.
			// having sees the selected values first, then the record's.
			c = &compiler{src: s.Having, models: p.models}
		}
		fn, err := c.compile(n)
		if err != nil {
			return nil, &SpecError{Field: "having", Err: err}
		}
		p.having = fn
	}
	if err := p.compilePost(s); err != nil {
		return nil, err
	}
	p.stateful = windowed || post || p.online != nil
	return p, nil
}

func (p *Plan) compileWindow(s Spec, w Window) error {
	pos := func(field string, d time.Duration) error {
		if d <= 0 {
			return specErr("window."+field, "must be positive, got %s", d)
		}
		return nil
	}
	var err error
	switch w.Kind {
	case NoWindow:
		if s.Tumbling < 0 {
			return specErr("window.tumbling", "must be positive, got %s", s.Tumbling)
		}
		return nil
	case Tumbling:
		if err = pos("tumbling", w.Size); err == nil {
			p.wins = newTimeWindows(int64(w.Size), int64(w.Size))
		}
	case Hopping:
		if err = pos("size", w.Size); err == nil {
			err = pos("every", w.Every)
		}
		if err == nil && w.Size/w.Every > 1000 {
			err = specErr("window.every", "%s makes more than 1000 windows of %s overlap", w.Every, w.Size)
		}
		if err == nil {
			p.wins = newTimeWindows(int64(w.Size), int64(w.Every))
		}
	case Sliding:
		if err = pos("sliding", w.Size); err == nil {
			p.wins = &slidingWindows{size: int64(w.Size), groups: map[string]*group{}, next: math.MaxInt64}
		}
	case Session:
		if err = pos("gap", w.Gap); err == nil {
			p.wins = &sessionWindows{gap: int64(w.Gap), groups: map[string]*group{}, next: math.MaxInt64}
		}
	case Count:
		if w.Count <= 0 {
			return specErr("window.count", "must be positive, got %d", w.Count)
		}
		p.wins = &countWindows{n: w.Count, groups: map[string]*group{}}
	default:
		return specErr("window", "unknown kind %d", w.Kind)
	}
	return err
}

// names returns the names of the select items.
func (p *Plan) names() []string {
	ns := make([]string, len(p.items))
	for i, it := range p.items {
		ns[i] = it.Name
	}
	return ns
}

// condExpr compiles a condition of an alert or pattern: over the record for
// a rule without window, over the keys and selected values otherwise.
func (p *Plan) condExpr(field, src string) (evalFn, error) {
	if src == "" {
		return nil, specErr(field, "is required")
	}
	n, err := parseExpr(src)
	if err != nil {
		return nil, &SpecError{Field: field, Err: err}
	}
	c := &compiler{src: src, models: p.models}
	if p.wins != nil {
		var none []aggSlot
		c = &compiler{src: src, aggs: &none, names: append(p.names(), p.keys...), aggMode: true, models: p.models}
	}
	fn, err := c.compile(n)
	if err != nil {
		return nil, &SpecError{Field: field, Err: err}
	}
	return fn, nil
}

// Name returns the rule's name.
func (p *Plan) Name() string { return p.name }

// Windowed reports whether the plan keeps state (a window, an alert, a
// pattern or a deadband) that Checkpoint saves and Restore loads.
func (p *Plan) Windowed() bool { return p.stateful }

// Fingerprint is the Spec.Fingerprint of the plan's spec: a plan compiled
// from an unchanged rule has the same, and can take over the old plan's
// state (or the old plan itself) across a config swap.
func (p *Plan) Fingerprint() uint64 { return p.fp }

// Process feeds one record to the plan and appends any outputs to out.
//
// A late record (event time older than the watermark) is counted in
// Stats.Late and dropped; with EventTime.Late set to LateEmit it is also
// emitted as it came, in an output of its own: Event "late", Time its event
// time, Key its group_by fields, Values all its fields (less Drop), and for
// tumbling and hopping windows the first window its time falls in (the
// window it was too late for). Like a stateless rule's values, its strings
// may point into the record.
func (p *Plan) Process(r *Record, out []Output) []Output {
	p.Stats.Processed++
	if len(out) == 0 {
		p.arena = p.arena[:0]
	}
	if p.where != nil && !p.where(r, nil).Truthy() {
		p.Stats.Filtered++
		return out
	}
	t, ok := p.eventTime(r)
	if !ok {
		p.Stats.Late++
		if p.emitLate {
			return p.late(r, t, out)
		}
		return out
	}
	if p.wins == nil {
		return p.stateless(r, t, out)
	}
	out = p.wins.advance(p, p.wm, out)
	out = p.wins.add(p, r, t, out)
	if p.pattern != nil {
		out = p.pattern.advance(p, p.wm, out)
	}
	return out
}

// ProcessBatch feeds records to the plan in order and appends any outputs
// to out: the same outputs, in the same order, as calling Process for each.
//
// A caller with several plans over one stream gets its throughput from the
// order of the loops: plan by plan over a batch of records, rather than
// record by record over the plans. A plan's state (its groups, their
// accumulators, its maps) is then used for a whole batch while it is in
// the CPU's caches, instead of being evicted by the other plans' state
// between two records; with 100 mixed rules over 1,000 devices this made
// the engine about 1.7 times as fast (tools/benchrules, batches of 512;
// Set does this and more). Each plan's
// outputs come in the order of its records; outputs of different plans are
// no longer interleaved by record.
func (p *Plan) ProcessBatch(rs []*Record, out []Output) []Output {
	for _, r := range rs {
		out = p.Process(r, out)
	}
	return out
}

// late emits a late record as an output of its own (see Process).
func (p *Plan) late(r *Record, t int64, out []Output) []Output {
	o := Output{Rule: p.name, Time: timeAt(t), Event: EventLate}
	if len(p.keys) > 0 {
		o.Key = p.keyFields(r)
	}
	o.Values = p.appendRecord(p.alloc(len(r.Fields))[:0], r)
	if w, ok := p.wins.(*timeWindows); ok {
		if ws := floorTo(t-w.size, w.every) + w.every; ws <= t { // else t falls between hopping windows
			o.WindowStart, o.WindowEnd = timeAt(ws), timeAt(ws+w.size)
		}
	}
	p.Stats.Emitted++
	return append(out, o)
}

// eventTime returns r's time in unix ns and moves the watermark; ok is false
// for a late record.
func (p *Plan) eventTime(r *Record) (int64, bool) {
	if p.timeField == "" {
		t := nanos(r.Time)
		if p.started && t < p.wm {
			t = p.wm // arrival time never goes back: a record is never late
		}
		if !p.started || t > p.wm {
			p.wm, p.maxT, p.started = t, t, true
			p.metaDirty = p.stateful
		}
		return t, true
	}
	v, _ := r.Get(p.timeField)
	t, ok := timeOf(v)
	if !ok {
		p.Stats.NoEventTime++
		t = nanos(r.Time)
	}
	if p.started && t < p.wm {
		return t, false
	}
	if !p.started || t > p.maxT {
		p.maxT = t
		if wm := t - p.lateness; !p.started || wm > p.wm {
			p.wm = wm
		}
		p.started = true
		p.metaDirty = p.stateful
	}
	return t, true
}

func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func timeAt(ns int64) time.Time { return time.Unix(0, ns).UTC() }

// Tick moves the watermark with the clock and closes the windows it passed,
// appending their outputs to out. With arrival time the watermark is now; with
// event time it moves only when EventTime.Idle is set, to now - Idle.
func (p *Plan) Tick(now time.Time, out []Output) []Output {
	if !p.stateful {
		return out
	}
	if len(out) == 0 {
		p.arena = p.arena[:0]
	}
	wm := nanos(now)
	if p.timeField != "" {
		if p.idle <= 0 {
			return out
		}
		wm -= p.idle
	}
	if p.started && wm <= p.wm {
		return out
	}
	if p.timeField == "" && !p.started {
		return out // nothing seen yet: the first record starts the clock
	}
	p.wm, p.started = wm, true
	n, dirty, dead := len(out), len(p.dirty), len(p.dead)
	if p.wins != nil {
		out = p.wins.advance(p, wm, out)
	}
	if p.pattern != nil {
		out = p.pattern.advance(p, wm, out)
	}
	// With arrival time no record is ever late, and after a restart the
	// first Tick takes the watermark to the clock again: a watermark that
	// only followed the clock is not worth a checkpoint (an idle agent
	// would write and fsync its buffer every second, wearing a gateway's
	// flash for nothing). It is saved with whatever its move closed or
	// changed, and always with event time, where it decides lateness.
	if p.timeField != "" || len(out) > n || len(p.dirty) > dirty || len(p.dead) > dead {
		p.metaDirty = true
	}
	return out
}

// Flush closes every open window now, whatever its end (sliding windows
// have none open: they emit per record).
func (p *Plan) Flush(out []Output) []Output {
	if p.wins == nil {
		return out
	}
	if len(out) == 0 {
		p.arena = p.arena[:0]
	}
	return p.wins.flush(p, out)
}

// stateless emits one row for a record of a rule without window.
func (p *Plan) stateless(r *Record, t int64, out []Output) []Output {
	rw := row{cond: r, t: t, time: r.Time, kid: p.kid}
	if len(p.keys) > 0 {
		rw.key = p.groupKey(r)
		rw.keys = p.keyFields(r)
	}
	if p.online != nil {
		p.online.enter(p, rw.key, rw.kid)
	}
	rw.vals = p.project(r)
	if p.having != nil {
		fs := p.alloc(len(rw.vals) + len(r.Fields))
		copy(fs, rw.vals)
		copy(fs[len(rw.vals):], r.Fields)
		p.selRec = Record{Fields: fs, Time: r.Time, Topic: r.Topic}
		if !p.having(&p.selRec, nil).Truthy() {
			p.Stats.Filtered++
			return out
		}
	}
	if p.online != nil && (p.alert != nil || p.pattern != nil) {
		// Conditions see what the learning functions computed: the
		// selected values first, then the record's fields.
		fs := p.alloc(len(rw.vals) + len(r.Fields))
		copy(fs, rw.vals)
		copy(fs[len(rw.vals):], r.Fields)
		p.condRec = Record{Fields: fs, Time: r.Time, Topic: r.Topic}
		rw.cond = &p.condRec
	}
	return p.emit(&rw, out)
}

// project evaluates the select over a record into the arena.
func (p *Plan) project(r *Record) []Field {
	n := 0
	for _, fn := range p.fns {
		if fn == nil {
			n += len(r.Fields)
		} else {
			n++
		}
	}
	if len(p.fns) == 0 {
		return p.appendRecord(p.alloc(len(r.Fields))[:0], r)
	}
	vals := p.alloc(n)[:0]
	for i, fn := range p.fns {
		if fn == nil {
			vals = p.appendRecord(vals, r)
			continue
		}
		vals = append(vals, Field{Name: p.items[i].Name, Value: fn(r, nil)})
	}
	return vals
}

func (p *Plan) appendRecord(dst []Field, r *Record) []Field {
	for _, f := range r.Fields {
		if len(p.drop) > 0 && slices.Contains(p.drop, f.Name) {
			continue
		}
		dst = append(dst, f)
	}
	return dst
}

// alloc returns n fields from the arena (n may be 0: an empty slice at the
// arena's end, to append to).
func (p *Plan) alloc(n int) []Field {
	if len(p.arena)+n > cap(p.arena) {
		p.arena = make([]Field, 0, max(2*cap(p.arena), n, 64))
	}
	l := len(p.arena)
	p.arena = p.arena[:l+n]
	return p.arena[l : l+n : l+n]
}

// row is one result of the core of a plan on its way to an output: a
// record's projection, or a window's values for a group.
type row struct {
	key      string  // group key text; may point into scratch memory
	kid      int32   // key number (Set) of a record's row; -1: none
	keys     []Field // group_by fields
	vals     []Field
	cond     *Record // what alert and pattern conditions see
	t        int64   // event time, unix ns
	time     time.Time
	ws, we   int64 // window, when windowed
	windowed bool
	event    string
}

// emit passes a row through alert or pattern and deadband, and appends its
// output.
func (p *Plan) emit(rw *row, out []Output) []Output {
	switch {
	case p.alert != nil:
		if !p.alert.row(p, rw) {
			return out
		}
	case p.pattern != nil:
		return p.pattern.row(p, rw, out)
	}
	return p.output(rw, out)
}

// output applies deadband and appends the row as an output.
func (p *Plan) output(rw *row, out []Output) []Output {
	if p.band != nil && !p.band.pass(p, rw) {
		p.Stats.Suppressed++
		return out
	}
	o := Output{Rule: p.name, Time: rw.time, Key: rw.keys, Values: rw.vals, Event: rw.event}
	if rw.windowed {
		o.WindowStart, o.WindowEnd = timeAt(rw.ws), timeAt(rw.we)
	}
	p.Stats.Emitted++
	return append(out, o)
}

// emitGroup computes a closed window's values for one group and emits them
// unless having rejects them.
func (p *Plan) emitGroup(g *group, accs []acc, ws, we int64, out []Output) []Output {
	p.view = aggView{keys: g.keys, accs: accs}
	p.selRec = Record{Time: timeAt(we)}
	if p.online != nil {
		p.online.enter(p, g.key, -1)
	}
	keys := p.alloc(len(p.keys))
	for i, k := range p.keys {
		keys[i] = Field{Name: k, Value: g.keys[i]}
	}
	vals := p.alloc(len(p.fns))
	for i, fn := range p.fns {
		vals[i] = Field{Name: p.items[i].Name, Value: fn(&p.selRec, &p.view)}
	}
	if p.having != nil {
		p.selRec.Fields = vals
		if !p.having(&p.selRec, &p.view).Truthy() {
			return out
		}
	}
	rw := row{key: g.key, kid: -1, keys: keys, vals: vals, t: we, time: timeAt(we), ws: ws, we: we, windowed: true}
	if p.alert != nil || p.pattern != nil {
		fs := p.alloc(len(keys) + len(vals))
		copy(fs, keys)
		copy(fs[len(keys):], vals)
		p.condRec = Record{Fields: fs, Time: rw.time}
		rw.cond = &p.condRec
	}
	return p.emit(&rw, out)
}
