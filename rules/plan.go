package rules

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// Spec is a rule as the agent's config describes it, already decoded. Package
// rules never parses YAML: the agent translates its config into Specs.
type Spec struct {
	Name      string
	Where     string        // condition; empty passes every record
	GroupBy   []string      // field names
	Tumbling  time.Duration // window size; 0 makes a stateless rule
	Select    []SelectItem  // in output order
	Having    string        // condition over the selected names
	MaxGroups int           // cap on open groups; 0 means DefaultMaxGroups
}

// SelectItem is one output value: a name and its expression.
type SelectItem struct {
	Name string
	Expr string
}

// DefaultMaxGroups caps the groups of a window when the spec sets no cap.
const DefaultMaxGroups = 10000

// SpecError is an error in one field of a rule's spec. Field is a path within
// the rule ("where", "select.avg_t"); a PosError inside says where in the
// expression.
type SpecError struct {
	Field string
	Err   error
}

func (e *SpecError) Error() string { return e.Field + ": " + e.Err.Error() }
func (e *SpecError) Unwrap() error { return e.Err }

// Stats are a plan's counters. They are plain fields written by the goroutine
// that drives the plan; read them from that goroutine or after it stopped.
type Stats struct {
	Processed     uint64 // records given to Process
	Filtered      uint64 // records that failed where
	GroupsDropped uint64 // records dropped because the group cap bit
	Late          uint64 // records older than the open window
	Emitted       uint64 // outputs
}

// Plan is a compiled rule. It is driven by one goroutine: Process, Tick,
// Checkpoint and Restore must not be called concurrently.
type Plan struct {
	name      string
	where     evalFn
	keys      []string
	items     []SelectItem
	fns       []evalFn
	aggs      []aggSlot
	having    evalFn
	size      time.Duration
	maxGroups int

	// The open window (arrival time, tumbling): its start and its groups.
	start  time.Time
	groups map[string]*group
	dirty  []*group
	reset  bool   // a window closed since the last checkpoint
	keyBuf []byte // scratch for composite group keys

	Stats Stats
}

// group is the state of one group key in the open window.
type group struct {
	key   string
	keys  []Value
	accs  []acc
	dirty bool
}

// Compile checks a spec and compiles it into a plan.
func Compile(s Spec) (*Plan, error) {
	if s.Name == "" {
		return nil, &SpecError{"name", errors.New("is required")}
	}
	p := &Plan{name: s.Name, keys: s.GroupBy, items: s.Select, size: s.Tumbling, maxGroups: s.MaxGroups}
	if p.maxGroups <= 0 {
		p.maxGroups = DefaultMaxGroups
	}
	if s.Where != "" {
		e, err := CompileExpr(s.Where)
		if err != nil {
			return nil, &SpecError{"where", err}
		}
		p.where = e.fn
	}
	windowed := s.Tumbling > 0
	if s.Tumbling < 0 {
		return nil, &SpecError{"window.tumbling", fmt.Errorf("must be positive, got %s", s.Tumbling)}
	}
	if windowed && len(s.Select) == 0 {
		return nil, &SpecError{"select", errors.New("a windowed rule needs at least one select item")}
	}
	if !windowed && len(s.GroupBy) > 0 {
		return nil, &SpecError{"group_by", errors.New("needs a window")}
	}
	seen := map[string]bool{}
	for _, it := range s.Select {
		field := "select." + it.Name
		if it.Name == "" {
			return nil, &SpecError{"select", errors.New("an item has no name")}
		}
		if seen[it.Name] {
			return nil, &SpecError{field, errors.New("duplicate name")}
		}
		seen[it.Name] = true
		n, err := parseExpr(it.Expr)
		if err != nil {
			return nil, &SpecError{field, err}
		}
		c := &compiler{src: it.Expr, aggs: &p.aggs, keys: s.GroupBy, aggMode: windowed}
		fn, err := c.compile(n)
		if err != nil {
			return nil, &SpecError{field, err}
		}
		p.fns = append(p.fns, fn)
	}
	if s.Having != "" {
		if !windowed {
			return nil, &SpecError{"having", errors.New("needs a window; use where")}
		}
		e, err := CompileExpr(s.Having)
		if err != nil {
			return nil, &SpecError{"having", err}
		}
		p.having = e.fn
	}
	if windowed {
		p.groups = make(map[string]*group)
	}
	return p, nil
}

// Name returns the rule's name.
func (p *Plan) Name() string { return p.name }

// Windowed reports whether the plan keeps window state.
func (p *Plan) Windowed() bool { return p.size > 0 }

// Process feeds one record to the plan and appends any outputs to out.
func (p *Plan) Process(r *Record, out []Output) []Output {
	p.Stats.Processed++
	if p.where != nil && !p.where(r, nil).Truthy() {
		p.Stats.Filtered++
		return out
	}
	if p.size == 0 {
		return p.emitRecord(r, out)
	}
	start := r.Time.Truncate(p.size)
	switch {
	case p.start.IsZero():
		p.start = start
	case start.After(p.start):
		out = p.closeWindow(out)
		p.start = start
	case start.Before(p.start):
		p.Stats.Late++
		return out
	}
	g := p.group(r)
	if g == nil {
		p.Stats.GroupsDropped++
		return out
	}
	for i := range p.aggs {
		s := &p.aggs[i]
		if s.arg == nil {
			g.accs[i].n++
		} else {
			s.fn.add(&g.accs[i], s.arg(r, nil))
		}
	}
	if !g.dirty {
		g.dirty = true
		p.dirty = append(p.dirty, g)
	}
	return out
}

// group finds or creates the group of r, or returns nil when the cap bites.
func (p *Plan) group(r *Record) *group {
	var key string
	switch len(p.keys) {
	case 0:
	case 1:
		v, _ := r.Get(p.keys[0])
		if v.Kind == KindString {
			key = v.Str
		} else {
			p.keyBuf = v.AppendText(p.keyBuf[:0])
			key = unsafeString(p.keyBuf)
		}
	default:
		p.keyBuf = p.keyBuf[:0]
		for i, k := range p.keys {
			if i > 0 {
				p.keyBuf = append(p.keyBuf, 0)
			}
			v, _ := r.Get(k)
			p.keyBuf = v.AppendText(p.keyBuf)
		}
		key = unsafeString(p.keyBuf)
	}
	if g := p.groups[key]; g != nil {
		return g
	}
	if len(p.groups) >= p.maxGroups {
		return nil
	}
	g := &group{key: strings.Clone(key), keys: make([]Value, len(p.keys)), accs: make([]acc, len(p.aggs))}
	for i, k := range p.keys {
		v, _ := r.Get(k)
		if v.Kind == KindString {
			v.Str = strings.Clone(v.Str)
		}
		g.keys[i] = v
	}
	p.groups[g.key] = g
	return g
}

// Tick closes the open window when now has passed its end, appending its
// outputs to out.
func (p *Plan) Tick(now time.Time, out []Output) []Output {
	if p.size == 0 || p.start.IsZero() || now.Before(p.start.Add(p.size)) {
		return out
	}
	out = p.closeWindow(out)
	p.start = time.Time{}
	return out
}

// Flush closes the open window now, whatever its end.
func (p *Plan) Flush(out []Output) []Output {
	if p.size == 0 || p.start.IsZero() {
		return out
	}
	out = p.closeWindow(out)
	p.start = time.Time{}
	return out
}

func (p *Plan) closeWindow(out []Output) []Output {
	end := p.start.Add(p.size)
	for _, g := range p.groups {
		o := Output{Rule: p.name, Time: end, WindowStart: p.start, WindowEnd: end,
			Key: make([]Field, len(p.keys)), Values: make([]Field, len(p.fns))}
		for i, k := range p.keys {
			o.Key[i] = Field{Name: k, Value: g.keys[i]}
		}
		for i, fn := range p.fns {
			o.Values[i] = Field{Name: p.items[i].Name, Value: fn(nil, g)}
		}
		if p.having != nil && !p.having(&Record{Fields: o.Values}, nil).Truthy() {
			continue
		}
		p.Stats.Emitted++
		out = append(out, o)
	}
	clear(p.groups)
	p.dirty = p.dirty[:0]
	p.reset = true
	return out
}

func (p *Plan) emitRecord(r *Record, out []Output) []Output {
	o := Output{Rule: p.name, Time: r.Time}
	if len(p.fns) == 0 {
		o.Values = make([]Field, len(r.Fields))
		for i, f := range r.Fields {
			if f.Kind == KindString {
				f.Str = strings.Clone(f.Str)
			}
			o.Values[i] = f
		}
	} else {
		o.Values = make([]Field, len(p.fns))
		for i, fn := range p.fns {
			v := fn(r, nil)
			if v.Kind == KindString {
				v.Str = strings.Clone(v.Str)
			}
			o.Values[i] = Field{Name: p.items[i].Name, Value: v}
		}
	}
	p.Stats.Emitted++
	return append(out, o)
}

// StateChange is what changed in a plan's state since its last checkpoint.
type StateChange struct {
	Reset bool         // drop all state saved before, then apply Puts
	Puts  []StateEntry // group key → encoded group state
}

// StateEntry is the saved state of one group.
type StateEntry struct {
	Key   string
	Value []byte
}

// Dirty reports whether the state changed since the last checkpoint.
func (p *Plan) Dirty() bool { return p.reset || len(p.dirty) > 0 }

// Checkpoint returns the state changes since the last call and forgets them.
// Saving them in the same transaction as the outputs and input positions that
// go with them is what makes a restart exact.
func (p *Plan) Checkpoint() StateChange {
	sc := StateChange{Reset: p.reset}
	for _, g := range p.dirty {
		sc.Puts = append(sc.Puts, StateEntry{Key: g.key, Value: p.encodeGroup(g)})
		g.dirty = false
	}
	p.dirty = p.dirty[:0]
	p.reset = false
	return sc
}

// encodeGroup lays out a group: window start (unix ns), the key values, then
// the accumulators, little endian.
func (p *Plan) encodeGroup(g *group) []byte {
	b := make([]byte, 0, 16+len(g.accs)*accSize)
	b = binary.LittleEndian.AppendUint64(b, uint64(p.start.UnixNano()))
	b = binary.AppendUvarint(b, uint64(len(g.keys)))
	for _, k := range g.keys {
		b = append(b, byte(k.Kind))
		switch k.Kind {
		case KindString:
			b = binary.AppendUvarint(b, uint64(len(k.Str)))
			b = append(b, k.Str...)
		case KindNumber, KindBool:
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(k.Num))
		}
	}
	b = binary.AppendUvarint(b, uint64(len(g.accs)))
	for _, a := range g.accs {
		for _, f := range [4]float64{a.n, a.sum, a.min, a.max} {
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(f))
		}
	}
	return b
}

// ErrBadState reports saved state that does not fit the plan (the rule
// changed shape, or the bytes are damaged).
var ErrBadState = errors.New("saved state does not match the rule")

// Restore replaces the plan's state with saved entries. Entries of a window
// other than the newest saved one are ignored, as are entries whose shape does
// not fit the rule (it was changed); the error says how many were skipped.
func (p *Plan) Restore(entries []StateEntry) error {
	if p.size == 0 {
		return nil
	}
	clear(p.groups)
	p.dirty = p.dirty[:0]
	p.start = time.Time{}
	skipped := 0
	var newest int64
	for _, e := range entries {
		if len(e.Value) >= 8 {
			if s := int64(binary.LittleEndian.Uint64(e.Value)); s > newest {
				newest = s
			}
		}
	}
	for _, e := range entries {
		g, start, err := p.decodeGroup(e)
		if err != nil || start != newest {
			skipped++
			continue
		}
		p.start = time.Unix(0, start)
		p.groups[g.key] = g
	}
	if skipped > 0 {
		return fmt.Errorf("restore rule %s: skipped %d of %d groups: %w", p.name, skipped, len(entries), ErrBadState)
	}
	return nil
}

func (p *Plan) decodeGroup(e StateEntry) (*group, int64, error) {
	b := e.Value
	if len(b) < 8 {
		return nil, 0, ErrBadState
	}
	start := int64(binary.LittleEndian.Uint64(b))
	b = b[8:]
	nk, n := binary.Uvarint(b)
	if n <= 0 || int(nk) != len(p.keys) {
		return nil, 0, ErrBadState
	}
	b = b[n:]
	g := &group{key: e.Key, keys: make([]Value, nk), accs: make([]acc, len(p.aggs))}
	for i := range g.keys {
		if len(b) < 1 {
			return nil, 0, ErrBadState
		}
		k := Kind(b[0])
		b = b[1:]
		switch k {
		case KindString:
			l, n := binary.Uvarint(b)
			if n <= 0 || uint64(len(b)-n) < l {
				return nil, 0, ErrBadState
			}
			g.keys[i] = String(string(b[n : n+int(l)]))
			b = b[n+int(l):]
		case KindNumber, KindBool:
			if len(b) < 8 {
				return nil, 0, ErrBadState
			}
			g.keys[i] = Value{Kind: k, Num: math.Float64frombits(binary.LittleEndian.Uint64(b))}
			b = b[8:]
		case KindNull:
		default:
			return nil, 0, ErrBadState
		}
	}
	na, n := binary.Uvarint(b)
	if n <= 0 || int(na) != len(p.aggs) || len(b)-n != int(na)*accSize {
		return nil, 0, ErrBadState
	}
	b = b[n:]
	for i := range g.accs {
		f := func(j int) float64 { return math.Float64frombits(binary.LittleEndian.Uint64(b[j*8:])) }
		g.accs[i] = acc{n: f(0), sum: f(1), min: f(2), max: f(3)}
		b = b[accSize:]
	}
	return g, start, nil
}
