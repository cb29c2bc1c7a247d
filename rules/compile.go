package rules

import (
	"fmt"
	"math"
	"strings"
)

// evalFn evaluates a compiled expression. g is the group whose aggregates a
// select expression reads; conditions on records ignore it.
type evalFn func(r *Record, g *group) Value

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

// compiler turns syntax trees into closures. When aggs is not nil the
// expression is a select item of a windowed rule: aggregate calls get a slot in
// each group's accumulators, and bare fields must be group keys.
type compiler struct {
	src     string
	aggs    *[]aggSlot
	keys    []string
	inAgg   bool
	aggMode bool
}

type aggSlot struct {
	fn  *aggFunc
	arg evalFn // nil for count(*)
}

func (c *compiler) errorf(n *node, format string, args ...any) error {
	return posErrorf(c.src, n.pos, format, args...)
}

func (c *compiler) compile(n *node) (evalFn, error) {
	switch n.op {
	case "num":
		v := Number(n.num)
		return func(*Record, *group) Value { return v }, nil
	case "str":
		v := String(n.str)
		return func(*Record, *group) Value { return v }, nil
	case "bool":
		v := Bool(n.num != 0)
		return func(*Record, *group) Value { return v }, nil
	case "null":
		return func(*Record, *group) Value { return Null }, nil
	case "field":
		return c.field(n)
	case "call":
		if af := aggregates[n.str]; af != nil {
			return c.aggregate(n, af)
		}
		return c.call(n)
	case "neg":
		x, err := c.compile(n.args[0])
		if err != nil {
			return nil, err
		}
		return func(r *Record, g *group) Value {
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
		return func(r *Record, g *group) Value { return Bool(!x(r, g).Truthy()) }, nil
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
			return func(rec *Record, g *group) Value { return Bool(l(rec, g).Truthy() && r(rec, g).Truthy()) }, nil
		}
		return func(rec *Record, g *group) Value { return Bool(l(rec, g).Truthy() || r(rec, g).Truthy()) }, nil
	case "+", "-", "*", "/", "%":
		return c.arith(n)
	case "=", "!=", "<", "<=", ">", ">=":
		return c.compare(n)
	case "between":
		x, err := c.compileAll(n.args)
		if err != nil {
			return nil, err
		}
		return func(r *Record, g *group) Value {
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
		return func(r *Record, g *group) Value {
			v := x(r, g)
			return Bool(v.Kind == KindString && likeMatch(v.Str, pat))
		}, nil
	case "in":
		x, err := c.compileAll(n.args)
		if err != nil {
			return nil, err
		}
		return func(r *Record, g *group) Value {
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
		return func(r *Record, g *group) Value { return Bool(x(r, g).Kind == KindNull) }, nil
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
		for i, k := range c.keys {
			if k == name {
				return func(_ *Record, g *group) Value { return g.keys[i] }, nil
			}
		}
		return nil, c.errorf(n, "field %q must be in group_by or inside an aggregate", name)
	}
	return func(r *Record, _ *group) Value {
		v, _ := r.Get(name)
		return v
	}, nil
}

func (c *compiler) aggregate(n *node, af *aggFunc) (evalFn, error) {
	if !c.aggMode {
		return nil, c.errorf(n, "aggregate %s() is only allowed in the select of a windowed rule", n.str)
	}
	if c.inAgg {
		return nil, c.errorf(n, "aggregate %s() inside another aggregate", n.str)
	}
	slot := aggSlot{fn: af}
	switch {
	case n.star || len(n.args) == 0:
		if af.name != "count" {
			return nil, c.errorf(n, "%s() needs one argument", n.str)
		}
	case len(n.args) == 1:
		c.inAgg = true
		arg, err := c.compile(n.args[0])
		c.inAgg = false
		if err != nil {
			return nil, err
		}
		slot.arg = arg
	default:
		return nil, c.errorf(n, "%s() takes one argument, got %d", n.str, len(n.args))
	}
	i := len(*c.aggs)
	*c.aggs = append(*c.aggs, slot)
	result := af.result
	return func(_ *Record, g *group) Value { return result(&g.accs[i]) }, nil
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
	var op func(a, b float64) float64
	switch n.op {
	case "+":
		op = func(a, b float64) float64 { return a + b }
	case "-":
		op = func(a, b float64) float64 { return a - b }
	case "*":
		op = func(a, b float64) float64 { return a * b }
	case "/":
		op = func(a, b float64) float64 { return a / b }
	case "%":
		op = math.Mod
	}
	return func(rec *Record, g *group) Value {
		a, b := l(rec, g), r(rec, g)
		if a.Kind != KindNumber || b.Kind != KindNumber {
			return Null
		}
		if (n.op == "/" || n.op == "%") && b.Num == 0 {
			return Null
		}
		return Number(op(a.Num, b.Num))
	}, nil
}

func (c *compiler) compare(n *node) (evalFn, error) {
	l, err := c.compile(n.args[0])
	if err != nil {
		return nil, err
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
	return func(rec *Record, g *group) Value {
		c, ok := cmpValues(l(rec, g), r(rec, g))
		return Bool(ok && test(c))
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

// scalarFunc is a function of the expression language. bind returns the
// closure for one call site, so arguments are evaluated without a slice.
type scalarFunc struct {
	minArgs, maxArgs int // maxArgs -1: any number
	bind             func(args []evalFn) evalFn
}

func (s *scalarFunc) arity() string {
	switch {
	case s.minArgs == s.maxArgs:
		return fmt.Sprintf("%d argument(s)", s.minArgs)
	case s.maxArgs < 0:
		return fmt.Sprintf("at least %d argument(s)", s.minArgs)
	}
	return fmt.Sprintf("%d to %d arguments", s.minArgs, s.maxArgs)
}

func math1(f func(float64) float64) *scalarFunc {
	return &scalarFunc{1, 1, func(a []evalFn) evalFn {
		x := a[0]
		return func(r *Record, g *group) Value {
			v := x(r, g)
			if v.Kind != KindNumber {
				return Null
			}
			return Number(f(v.Num))
		}
	}}
}

// scalars is the registry of scalar functions; adding one is adding a line.
var scalars = map[string]*scalarFunc{
	"abs":   math1(math.Abs),
	"ceil":  math1(math.Ceil),
	"floor": math1(math.Floor),
	"sqrt":  math1(math.Sqrt),
	"round": {1, 2, func(a []evalFn) evalFn {
		return func(r *Record, g *group) Value {
			v := a[0](r, g)
			if v.Kind != KindNumber {
				return Null
			}
			scale := 1.0
			if len(a) == 2 {
				d := a[1](r, g)
				if d.Kind != KindNumber {
					return Null
				}
				scale = math.Pow(10, math.Trunc(d.Num))
			}
			return Number(math.Round(v.Num*scale) / scale)
		}
	}},
	"coalesce": {1, -1, func(a []evalFn) evalFn {
		return func(r *Record, g *group) Value {
			for _, x := range a {
				if v := x(r, g); v.Kind != KindNull {
					return v
				}
			}
			return Null
		}
	}},
	"if": {3, 3, func(a []evalFn) evalFn {
		return func(r *Record, g *group) Value {
			if a[0](r, g).Truthy() {
				return a[1](r, g)
			}
			return a[2](r, g)
		}
	}},
}
