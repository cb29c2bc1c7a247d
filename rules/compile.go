package rules

import (
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/sluiceio/sluice/rules/ml"
)

// evalFn evaluates a compiled expression over a record r (never nil) and, in
// the select, having and alert of a windowed rule, the group's keys and
// accumulators v (nil elsewhere). It does not allocate unless a string
// function builds a new string.
type evalFn func(r *Record, v *aggView) Value

// aggView is what a windowed expression reads besides the record: the group
// keys and the accumulators of its aggregate slots.
type aggView struct {
	keys []Value
	accs []acc
}

// Expr is a compiled expression over one record.
type Expr struct {
	src string
	fn  evalFn
}

// CompileExpr compiles a condition or computed value over a record's fields.
// Aggregate functions are not allowed here.
func CompileExpr(src string) (*Expr, error) {
	n, err := parseExpr(src)
	if err != nil {
		return nil, err
	}
	c := &compiler{src: src}
	fn, err := c.compile(n)
	if err != nil {
		return nil, err
	}
	return &Expr{src: src, fn: fn}, nil
}

// Eval evaluates e over r.
func (e *Expr) Eval(r *Record) Value { return e.fn(r, nil) }

// String returns the source of e.
func (e *Expr) String() string { return e.src }

// compiler turns syntax trees into closures. With aggMode the expression is
// a select item or the having of a windowed rule: aggregate calls get a slot
// in each group's accumulators, and bare fields must be group keys, or names
// of select items (names, read from the record of output values).
type compiler struct {
	src     string
	aggs    *[]aggSlot
	keys    []string
	names   []string
	inAgg   bool
	aggMode bool
	plan    *Plan // set where learning functions may be called
	models  map[string]*ml.Model
}

// aggSlot is one accumulator of a windowed rule, for one aggregate call or
// several that share it (see sharedState).
type aggSlot struct {
	fn     *aggFunc
	arg    evalFn // nil for count(*)
	consts []float64
	share  string // what calls with the same state have in common; "" shares nothing
}

// sharedState returns the key under which an aggregate call can share its
// accumulator with others of the rule: the kind of state and the argument.
// An argument that calls a function is not shared: a learning function
// (anomaly_score, ...) must see each call's values.
func sharedState(n *node, af *aggFunc) string {
	kind := af.state
	if kind == "" {
		kind = af.name
	}
	if n.star || len(n.args) == 0 {
		return kind + "(*)"
	}
	b := []byte(kind + "(")
	if !appendNodeKey(&b, n.args[0]) {
		return ""
	}
	return string(b)
}

// appendNodeKey writes a canonical form of an expression without calls;
// it returns false for one with a call.
func appendNodeKey(b *[]byte, n *node) bool {
	if n.op == "call" {
		return false
	}
	*b = append(*b, n.op...)
	*b = append(*b, 0)
	*b = strconv.AppendFloat(*b, n.num, 'g', -1, 64)
	*b = append(*b, 0)
	*b = strconv.AppendQuote(*b, n.str)
	if n.star {
		*b = append(*b, '*')
	}
	*b = append(*b, '[')
	for _, a := range n.args {
		if !appendNodeKey(b, a) {
			return false
		}
		*b = append(*b, ',')
	}
	*b = append(*b, ']')
	return true
}

// add folds record r (at event time t) into a.
func (s *aggSlot) add(a *acc, r *Record, t int64) { s.addValue(a, s.value(r), t) }

// value is what r contributes: its argument, Bool(true) for count(*), Null
// for nothing (a null, or not a number for a numeric aggregate).
func (s *aggSlot) value(r *Record) Value {
	if s.arg == nil {
		return Bool(true)
	}
	v := s.arg(r, nil)
	if s.fn.numeric && (v.Kind != KindNumber || math.IsNaN(v.Num)) {
		return Null
	}
	return v
}

// addValue folds a value from value into a.
func (s *aggSlot) addValue(a *acc, v Value, t int64) {
	if v.Kind == KindNull {
		return
	}
	if a.ext == nil && s.fn.newExt != nil {
		a.ext = s.fn.newExt()
	}
	s.fn.add(a, v, t)
}

// merge folds src into dst.
func (s *aggSlot) merge(dst, src *acc) {
	if src.n == 0 {
		return
	}
	if dst.ext == nil && s.fn.newExt != nil {
		dst.ext = s.fn.newExt()
	}
	s.fn.merge(dst, src)
}

func (c *compiler) errorf(n *node, format string, args ...any) error {
	return posErrorf(c.src, n.pos, format, args...)
}

func (c *compiler) compile(n *node) (evalFn, error) {
	switch n.op {
	case "num":
		v := Number(n.num)
		return func(*Record, *aggView) Value { return v }, nil
	case "str":
		v := String(n.str)
		return func(*Record, *aggView) Value { return v }, nil
	case "bool":
		v := Bool(n.num != 0)
		return func(*Record, *aggView) Value { return v }, nil
	case "null":
		return func(*Record, *aggView) Value { return Null }, nil
	case "field":
		return c.field(n)
	case "call":
		if af := aggregates[n.str]; af != nil {
			return c.aggregate(n, af)
		}
		return c.call(n)
	case "case":
		return c.caseWhen(n)
	case "neg":
		x, err := c.compile(n.args[0])
		if err != nil {
			return nil, err
		}
		return func(r *Record, g *aggView) Value {
			v := x(r, g)
			if v.Kind != KindNumber {
				return Null
			}
			return Number(-v.Num)
		}, nil
	case "not":
		x, err := c.compile(n.args[0])
		if err != nil {
			return nil, err
		}
		return func(r *Record, g *aggView) Value { return Bool(!x(r, g).Truthy()) }, nil
	case "and", "or":
		l, err := c.compile(n.args[0])
		if err != nil {
			return nil, err
		}
		r, err := c.compile(n.args[1])
		if err != nil {
			return nil, err
		}
		if n.op == "and" {
			return func(rec *Record, g *aggView) Value { return Bool(l(rec, g).Truthy() && r(rec, g).Truthy()) }, nil
		}
		return func(rec *Record, g *aggView) Value { return Bool(l(rec, g).Truthy() || r(rec, g).Truthy()) }, nil
	case "+", "-", "*", "/", "%":
		return c.arith(n)
	case "=", "!=", "<", "<=", ">", ">=":
		return c.compare(n)
	case "between":
		x, err := c.compileAll(n.args)
		if err != nil {
			return nil, err
		}
		return func(r *Record, g *aggView) Value {
			v := x[0](r, g)
			lo, hi := x[1](r, g), x[2](r, g)
			c1, ok1 := cmpValues(v, lo)
			c2, ok2 := cmpValues(v, hi)
			return Bool(ok1 && ok2 && c1 >= 0 && c2 <= 0)
		}, nil
	case "like":
		x, err := c.compile(n.args[0])
		if err != nil {
			return nil, err
		}
		pat := n.str
		return func(r *Record, g *aggView) Value {
			v := x(r, g)
			return Bool(v.Kind == KindString && likeMatch(v.Str, pat))
		}, nil
	case "in":
		x, err := c.compileAll(n.args)
		if err != nil {
			return nil, err
		}
		return func(r *Record, g *aggView) Value {
			v := x[0](r, g)
			for _, e := range x[1:] {
				if c, ok := cmpValues(v, e(r, g)); ok && c == 0 {
					return Bool(true)
				}
			}
			return Bool(false)
		}, nil
	case "isnull":
		x, err := c.compile(n.args[0])
		if err != nil {
			return nil, err
		}
		return func(r *Record, g *aggView) Value { return Bool(x(r, g).Kind == KindNull) }, nil
	}
	return nil, c.errorf(n, "unsupported expression %q", n.op)
}

func (c *compiler) compileAll(ns []*node) ([]evalFn, error) {
	fns := make([]evalFn, len(ns))
	for i, a := range ns {
		fn, err := c.compile(a)
		if err != nil {
			return nil, err
		}
		fns[i] = fn
	}
	return fns, nil
}

func (c *compiler) field(n *node) (evalFn, error) {
	name := n.str
	if c.aggMode && !c.inAgg {
		if i := slices.Index(c.keys, name); i >= 0 {
			return func(_ *Record, g *aggView) Value { return g.keys[i] }, nil
		}
		if !slices.Contains(c.names, name) {
			return nil, c.errorf(n, "field %q must be in group_by or inside an aggregate", name)
		}
	}
	return func(r *Record, _ *aggView) Value {
		v, _ := r.Get(name)
		return v
	}, nil
}

func (c *compiler) aggregate(n *node, af *aggFunc) (evalFn, error) {
	if !c.aggMode {
		return nil, c.errorf(n, "aggregate %s() is only allowed in the select or having of a windowed rule", n.str)
	}
	if c.inAgg {
		return nil, c.errorf(n, "aggregate %s() inside another aggregate", n.str)
	}
	slot := aggSlot{fn: af}
	switch {
	case n.star || len(n.args) == 0:
		if af != aggCount {
			return nil, c.errorf(n, "%s() needs one argument", n.str)
		}
	case len(n.args) == 1+af.consts:
		c.inAgg = true
		arg, err := c.compile(n.args[0])
		c.inAgg = false
		if err != nil {
			return nil, err
		}
		slot.arg = arg
		for _, k := range n.args[1:] {
			if k.op != "num" {
				return nil, c.errorf(k, "%s() needs a constant number here", n.str)
			}
			slot.consts = append(slot.consts, k.num)
		}
		if af.check != nil {
			if msg := af.check(slot.consts); msg != "" {
				return nil, c.errorf(n.args[1], "%s(): %s", n.str, msg)
			}
		}
	default:
		return nil, c.errorf(n, "%s() takes %d argument(s), got %d", n.str, 1+af.consts, len(n.args))
	}
	// Aggregates that keep the same state of the same argument share one
	// accumulator (avg(x) and max(x), quantile(x, 0.5) and
	// quantile(x, 0.95)): a record updates it once, and a group's state is
	// smaller, which is what a window of many groups pays for in cache misses.
	slot.share = sharedState(n, af)
	i := len(*c.aggs)
	if slot.share != "" {
		for j, s := range *c.aggs {
			if s.share == slot.share {
				i = j
				break
			}
		}
	}
	if i == len(*c.aggs) {
		*c.aggs = append(*c.aggs, slot)
	}
	result, consts := af.result, slot.consts
	return func(_ *Record, g *aggView) Value { return result(&g.accs[i], consts) }, nil
}

func (c *compiler) arith(n *node) (evalFn, error) {
	l, err := c.compile(n.args[0])
	if err != nil {
		return nil, err
	}
	r, err := c.compile(n.args[1])
	if err != nil {
		return nil, err
	}
	num := func(f func(a, b float64) Value) evalFn {
		return func(rec *Record, g *aggView) Value {
			a, b := l(rec, g), r(rec, g)
			if a.Kind != KindNumber || b.Kind != KindNumber {
				return Null
			}
			return f(a.Num, b.Num)
		}
	}
	switch n.op {
	case "+":
		return num(func(a, b float64) Value { return Number(a + b) }), nil
	case "-":
		return num(func(a, b float64) Value { return Number(a - b) }), nil
	case "*":
		return num(func(a, b float64) Value { return Number(a * b) }), nil
	case "/":
		return num(func(a, b float64) Value {
			if b == 0 {
				return Null
			}
			return Number(a / b)
		}), nil
	default:
		return num(func(a, b float64) Value {
			if b == 0 {
				return Null
			}
			return Number(math.Mod(a, b))
		}), nil
	}
}

func (c *compiler) compare(n *node) (evalFn, error) {
	l, err := c.compile(n.args[0])
	if err != nil {
		return nil, err
	}
	// A comparison with a constant number is the common condition: one
	// closure, no second call.
	if k := n.args[1]; k.op == "num" {
		x := k.num
		switch n.op {
		case ">":
			return func(rec *Record, g *aggView) Value { v := l(rec, g); return Bool(v.Kind == KindNumber && v.Num > x) }, nil
		case ">=":
			return func(rec *Record, g *aggView) Value { v := l(rec, g); return Bool(v.Kind == KindNumber && v.Num >= x) }, nil
		case "<":
			return func(rec *Record, g *aggView) Value { v := l(rec, g); return Bool(v.Kind == KindNumber && v.Num < x) }, nil
		case "<=":
			return func(rec *Record, g *aggView) Value { v := l(rec, g); return Bool(v.Kind == KindNumber && v.Num <= x) }, nil
		}
	}
	r, err := c.compile(n.args[1])
	if err != nil {
		return nil, err
	}
	var test func(c int) bool
	switch n.op {
	case "=":
		test = func(c int) bool { return c == 0 }
	case "!=":
		test = func(c int) bool { return c != 0 }
	case "<":
		test = func(c int) bool { return c < 0 }
	case "<=":
		test = func(c int) bool { return c <= 0 }
	case ">":
		test = func(c int) bool { return c > 0 }
	case ">=":
		test = func(c int) bool { return c >= 0 }
	}
	return func(rec *Record, g *aggView) Value {
		c, ok := cmpValues(l(rec, g), r(rec, g))
		return Bool(ok && test(c))
	}, nil
}

// caseWhen compiles CASE [x] WHEN a THEN b ... [ELSE e] END: args are the
// operand (when n.star), then pairs, then the else (when n.num is 1).
func (c *compiler) caseWhen(n *node) (evalFn, error) {
	x, err := c.compileAll(n.args)
	if err != nil {
		return nil, err
	}
	var operand, otherwise evalFn
	if n.star {
		operand, x = x[0], x[1:]
	}
	if n.num == 1 {
		otherwise, x = x[len(x)-1], x[:len(x)-1]
	}
	return func(r *Record, g *aggView) Value {
		var v Value
		if operand != nil {
			v = operand(r, g)
		}
		for i := 0; i+1 < len(x); i += 2 {
			w := x[i](r, g)
			if operand != nil {
				if c, ok := cmpValues(v, w); !ok || c != 0 {
					continue
				}
			} else if !w.Truthy() {
				continue
			}
			return x[i+1](r, g)
		}
		if otherwise != nil {
			return otherwise(r, g)
		}
		return Null
	}, nil
}

// cmpValues orders two values of the same kind. ok is false when they cannot
// be compared (a null, or different kinds), which makes a comparison false, as
// SQL's unknown does in a WHERE.
func cmpValues(a, b Value) (c int, ok bool) {
	if a.Kind != b.Kind || a.Kind == KindNull {
		return 0, false
	}
	if a.Kind == KindString {
		return strings.Compare(a.Str, b.Str), true
	}
	switch {
	case a.Num < b.Num:
		return -1, true
	case a.Num > b.Num:
		return 1, true
	case a.Num == b.Num:
		return 0, true
	}
	return 0, false // NaN
}

// likeMatch matches s against a SQL LIKE pattern (% any run, _ one byte).
// It backtracks only to the last %, so it is O(len(s)·len(pat)) at worst.
func likeMatch(s, pat string) bool {
	si, pi := 0, 0
	star, mark := -1, 0
	for si < len(s) {
		switch {
		case pi < len(pat) && (pat[pi] == '_' || (pat[pi] != '%' && pat[pi] == s[si])):
			si++
			pi++
		case pi < len(pat) && pat[pi] == '%':
			star, mark = pi, si
			pi++
		case star >= 0:
			pi = star + 1
			mark++
			si = mark
		default:
			return false
		}
	}
	for pi < len(pat) && pat[pi] == '%' {
		pi++
	}
	return pi == len(pat)
}

func (c *compiler) call(n *node) (evalFn, error) {
	if of := onlineFuncs[n.str]; of != nil {
		return c.online(n, of)
	}
	if n.str == "predict" || n.str == "classify" {
		return c.model(n)
	}
	sf := scalars[n.str]
	if sf == nil {
		return nil, c.errorf(n, "unknown function %s()", n.str)
	}
	if len(n.args) < sf.minArgs || (sf.maxArgs >= 0 && len(n.args) > sf.maxArgs) {
		return nil, c.errorf(n, "%s() takes %s, got %d", n.str, sf.arity(), len(n.args))
	}
	args, err := c.compileAll(n.args)
	if err != nil {
		return nil, err
	}
	return sf.bind(args), nil
}
