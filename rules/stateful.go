package rules

import (
	"math"

	"github.com/sluiceio/sluice/rules/ml"
)

// onlineFunc is a function that learns from the stream: each call site in a
// rule keeps one ml.Online per group key. Its first argument is the value
// learned; the others are constant numbers that configure it (defaults
// where left out).
type onlineFunc struct {
	minArgs, maxArgs int
	defaults         []float64 // for the constant arguments, in order
	make             func(consts []float64) (ml.Online, error)
}

// onlineFuncs is the registry of learning functions.
var onlineFuncs = map[string]*onlineFunc{
	"anomaly_score": {1, 1, nil, func([]float64) (ml.Online, error) { return ml.NewAnomaly(), nil }},
	"zscore": {1, 2, []float64{100}, func(c []float64) (ml.Online, error) {
		return ml.NewZScore(c[0])
	}},
	"ewma": {2, 2, []float64{0}, func(c []float64) (ml.Online, error) { return ml.NewEWMA(c[0]) }},
	"forecast": {2, 3, []float64{1, 0}, func(c []float64) (ml.Online, error) {
		return ml.NewForecast(c[0], c[1])
	}},
	"changepoint": {1, 2, []float64{8}, func(c []float64) (ml.Online, error) {
		return ml.NewChangePoint(c[0])
	}},
}

// onlineSlot is one call site of a learning function in a plan.
type onlineSlot struct {
	make   func() ml.Online
	arg    evalFn
	sample ml.Online // made at compile time: checks the constants, and its Size
}

// onlineOp holds the learning functions' state of a plan: per group key,
// one ml.Online per call site. Rows set cur before the select is evaluated.
type onlineOp struct {
	slots  []onlineSlot
	states map[string]*onlineState
	ids    idCache[onlineState]
	cur    *onlineState // the state of the row being evaluated; nil past the group cap
}

type onlineState struct {
	tracked
	fns []ml.Online
}

func (s *onlineState) appendState(_ *Plan, b []byte) []byte {
	for _, f := range s.fns {
		b = f.AppendState(b)
	}
	return b
}

func (o *onlineOp) decode(_ *Plan, key string, d *decoder) (stateItem, error) {
	s := o.newState()
	rest := d.b
	for _, f := range s.fns {
		var err error
		if rest, err = f.DecodeState(rest); err != nil {
			return nil, ErrBadState
		}
	}
	d.b = rest
	o.states[key[1:]] = s
	return s, nil
}

func (o *onlineOp) newState() *onlineState {
	s := &onlineState{fns: make([]ml.Online, len(o.slots))}
	for i := range o.slots {
		s.fns[i] = o.slots[i].make()
	}
	return s
}

// enter sets the state of the group key key (scratch memory), numbered kid
// (-1: none), for the evaluation of a row, creating it at first use.
func (o *onlineOp) enter(p *Plan, key string, kid int32) {
	if s := o.ids.get(kid); s != nil {
		o.cur = s
		p.touch(s)
		return
	}
	if s := o.states[key]; s != nil {
		o.ids.set(kid, s, &s.tracked)
		o.cur = s
		p.touch(s)
		return
	}
	if len(o.states) >= p.maxGroups {
		p.Stats.GroupsDropped++
		o.cur = nil
		return
	}
	s := o.newState()
	s.skey = prefixOnline + key
	o.states[s.skey[1:]] = s
	o.ids.set(kid, s, &s.tracked)
	p.created(s)
	o.cur = s
}

// StateSize returns the bytes of learning state the plan keeps per group key
// (0 for a rule without learning functions).
func (p *Plan) StateSize() int {
	if p.online == nil {
		return 0
	}
	n := 0
	for _, s := range p.online.slots {
		n += s.sample.Size()
	}
	return n
}

// online compiles a call of a learning function.
func (c *compiler) online(n *node, f *onlineFunc) (evalFn, error) {
	if c.plan == nil {
		return nil, c.errorf(n, "%s() learns per group key: use it in the select or having of a rule", n.str)
	}
	if c.inAgg {
		return nil, c.errorf(n, "%s() inside an aggregate", n.str)
	}
	if len(n.args) < f.minArgs || len(n.args) > f.maxArgs {
		sf := scalarFunc{minArgs: f.minArgs, maxArgs: f.maxArgs}
		return nil, c.errorf(n, "%s() takes %s, got %d", n.str, sf.arity(), len(n.args))
	}
	consts := append([]float64(nil), f.defaults...)
	for i, k := range n.args[1:] {
		v, ok := constNumber(k)
		if !ok {
			return nil, c.errorf(k, "%s() needs a constant number here", n.str)
		}
		consts[i] = v
	}
	sample, err := f.make(consts)
	if err != nil {
		return nil, c.errorf(n, "%s(): %v", n.str, err)
	}
	arg, err := c.compile(n.args[0])
	if err != nil {
		return nil, err
	}
	p := c.plan
	if p.online == nil {
		p.online = &onlineOp{states: map[string]*onlineState{}}
	}
	i := len(p.online.slots)
	p.online.slots = append(p.online.slots, onlineSlot{
		make: func() ml.Online {
			o, _ := f.make(consts) // the same constants made sample without error
			return o
		},
		arg: arg, sample: sample,
	})
	op := p.online
	return func(r *Record, g *aggView) Value {
		v := arg(r, g)
		if op.cur == nil || v.Kind != KindNumber {
			return Null
		}
		y := op.cur.fns[i].Update(v.Num)
		if math.IsNaN(y) {
			return Null
		}
		return Number(y)
	}, nil
}

// constNumber reads a constant number argument, negative ones included.
func constNumber(n *node) (float64, bool) {
	switch {
	case n.op == "num":
		return n.num, true
	case n.op == "neg" && len(n.args) == 1 && n.args[0].op == "num":
		return -n.args[0].num, true
	}
	return 0, false
}
