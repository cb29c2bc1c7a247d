package rules

import (
	"strconv"
	"strings"
)

// node is the syntax tree of an expression.
type node struct {
	op   string // literal kinds: "num", "str", "bool", "null"; "field"; "call"; operators
	pos  int
	num  float64
	str  string // string literal, field name or function name (lower case)
	args []*node
	star bool // count(*)
}

type parser struct {
	src  string
	toks []token
	i    int
}

// parseExpr parses one expression in SQL syntax (AND/OR/NOT, = <> < <= > >=,
// BETWEEN, LIKE, IN, IS NULL, arithmetic, function calls); && || ! == != are
// accepted too, for people who write C.
func parseExpr(src string) (*node, error) {
	toks, err := lex(src)
	if err != nil {
		return nil, err
	}
	p := &parser{src: src, toks: toks}
	n, err := p.or()
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tokEOF {
		return nil, p.errorf(t, "unexpected %q after the expression", t.text)
	}
	return n, nil
}

func (p *parser) peek() token { return p.toks[p.i] }
func (p *parser) next() token { t := p.toks[p.i]; p.i++; return t }

func (p *parser) errorf(t token, format string, args ...any) error {
	return posErrorf(p.src, t.pos, format, args...)
}

// keyword reports whether the next token is the keyword kw and consumes it.
func (p *parser) keyword(kw string) bool {
	t := p.peek()
	if t.kind == tokIdent && strings.EqualFold(t.text, kw) {
		p.i++
		return true
	}
	return false
}

func (p *parser) isKeyword(kw string) bool {
	t := p.peek()
	return t.kind == tokIdent && strings.EqualFold(t.text, kw)
}

func (p *parser) op(ops ...string) (token, bool) {
	t := p.peek()
	if t.kind == tokOp {
		for _, o := range ops {
			if t.text == o {
				p.i++
				return t, true
			}
		}
	}
	return t, false
}

func (p *parser) or() (*node, error) {
	l, err := p.and()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		if _, ok := p.op("||"); !ok && !p.keyword("OR") {
			return l, nil
		}
		r, err := p.and()
		if err != nil {
			return nil, err
		}
		l = &node{op: "or", pos: t.pos, args: []*node{l, r}}
	}
}

func (p *parser) and() (*node, error) {
	l, err := p.not()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		if _, ok := p.op("&&"); !ok && !p.keyword("AND") {
			return l, nil
		}
		r, err := p.not()
		if err != nil {
			return nil, err
		}
		l = &node{op: "and", pos: t.pos, args: []*node{l, r}}
	}
}

func (p *parser) not() (*node, error) {
	t := p.peek()
	if _, ok := p.op("!"); ok || p.keyword("NOT") {
		x, err := p.not()
		if err != nil {
			return nil, err
		}
		return &node{op: "not", pos: t.pos, args: []*node{x}}, nil
	}
	return p.comparison()
}

func (p *parser) comparison() (*node, error) {
	l, err := p.additive()
	if err != nil {
		return nil, err
	}
	t := p.peek()
	if o, ok := p.op("=", "==", "!=", "<>", "<", "<=", ">", ">="); ok {
		r, err := p.additive()
		if err != nil {
			return nil, err
		}
		op := o.text
		switch op {
		case "==":
			op = "="
		case "<>":
			op = "!="
		}
		return &node{op: op, pos: o.pos, args: []*node{l, r}}, nil
	}
	negate := false
	if p.isKeyword("NOT") {
		// NOT BETWEEN / NOT LIKE / NOT IN
		save := p.i
		p.i++
		if !p.isKeyword("BETWEEN") && !p.isKeyword("LIKE") && !p.isKeyword("IN") {
			p.i = save
			return l, nil
		}
		negate = true
	}
	var n *node
	switch {
	case p.keyword("BETWEEN"):
		lo, err := p.additive()
		if err != nil {
			return nil, err
		}
		if !p.keyword("AND") {
			return nil, p.errorf(p.peek(), "expected AND in BETWEEN")
		}
		hi, err := p.additive()
		if err != nil {
			return nil, err
		}
		n = &node{op: "between", pos: t.pos, args: []*node{l, lo, hi}}
	case p.keyword("LIKE"):
		pat := p.next()
		if pat.kind != tokString {
			return nil, p.errorf(pat, "LIKE needs a string pattern")
		}
		n = &node{op: "like", pos: t.pos, str: pat.text, args: []*node{l}}
	case p.keyword("IN"):
		if _, ok := p.op("("); !ok {
			return nil, p.errorf(p.peek(), "expected ( after IN")
		}
		n = &node{op: "in", pos: t.pos, args: []*node{l}}
		for {
			x, err := p.additive()
			if err != nil {
				return nil, err
			}
			n.args = append(n.args, x)
			if _, ok := p.op(","); ok {
				continue
			}
			if _, ok := p.op(")"); !ok {
				return nil, p.errorf(p.peek(), "expected , or ) in IN list")
			}
			break
		}
	case p.keyword("IS"):
		neg := p.keyword("NOT")
		if !p.keyword("NULL") {
			return nil, p.errorf(p.peek(), "expected NULL after IS")
		}
		n = &node{op: "isnull", pos: t.pos, args: []*node{l}}
		if neg {
			n = &node{op: "not", pos: t.pos, args: []*node{n}}
		}
		return n, nil
	default:
		return l, nil
	}
	if negate {
		n = &node{op: "not", pos: t.pos, args: []*node{n}}
	}
	return n, nil
}

func (p *parser) additive() (*node, error) {
	l, err := p.multiplicative()
	if err != nil {
		return nil, err
	}
	for {
		o, ok := p.op("+", "-")
		if !ok {
			return l, nil
		}
		r, err := p.multiplicative()
		if err != nil {
			return nil, err
		}
		l = &node{op: o.text, pos: o.pos, args: []*node{l, r}}
	}
}

func (p *parser) multiplicative() (*node, error) {
	l, err := p.unary()
	if err != nil {
		return nil, err
	}
	for {
		o, ok := p.op("*", "/", "%")
		if !ok {
			return l, nil
		}
		r, err := p.unary()
		if err != nil {
			return nil, err
		}
		l = &node{op: o.text, pos: o.pos, args: []*node{l, r}}
	}
}

func (p *parser) unary() (*node, error) {
	if o, ok := p.op("-"); ok {
		x, err := p.unary()
		if err != nil {
			return nil, err
		}
		if x.op == "num" {
			x.num = -x.num
			x.pos = o.pos
			return x, nil
		}
		return &node{op: "neg", pos: o.pos, args: []*node{x}}, nil
	}
	if _, ok := p.op("+"); ok {
		return p.unary()
	}
	return p.primary()
}

func (p *parser) primary() (*node, error) {
	t := p.next()
	switch t.kind {
	case tokNumber:
		f, err := strconv.ParseFloat(t.text, 64)
		if err != nil {
			return nil, p.errorf(t, "bad number %q", t.text)
		}
		return &node{op: "num", pos: t.pos, num: f}, nil
	case tokString:
		return &node{op: "str", pos: t.pos, str: t.text}, nil
	case tokIdent:
		switch strings.ToUpper(t.text) {
		case "TRUE":
			return &node{op: "bool", pos: t.pos, num: 1}, nil
		case "FALSE":
			return &node{op: "bool", pos: t.pos}, nil
		case "NULL":
			return &node{op: "null", pos: t.pos}, nil
		case "CASE":
			return p.caseWhen(t)
		}
		if _, ok := p.op("("); !ok {
			return &node{op: "field", pos: t.pos, str: t.text}, nil
		}
		call := &node{op: "call", pos: t.pos, str: strings.ToLower(t.text)}
		if _, ok := p.op(")"); ok {
			return call, nil
		}
		if _, ok := p.op("*"); ok {
			call.star = true
			if _, ok := p.op(")"); !ok {
				return nil, p.errorf(p.peek(), "expected ) after *")
			}
			return call, nil
		}
		for {
			a, err := p.or()
			if err != nil {
				return nil, err
			}
			call.args = append(call.args, a)
			if _, ok := p.op(","); ok {
				continue
			}
			if _, ok := p.op(")"); !ok {
				return nil, p.errorf(p.peek(), "expected , or ) in the arguments of %s", call.str)
			}
			return call, nil
		}
	case tokOp:
		if t.text == "(" {
			x, err := p.or()
			if err != nil {
				return nil, err
			}
			if _, ok := p.op(")"); !ok {
				return nil, p.errorf(p.peek(), "expected )")
			}
			return x, nil
		}
		return nil, p.errorf(t, "unexpected %q", t.text)
	case tokEOF:
		return nil, p.errorf(t, "unexpected end of expression")
	}
	return nil, p.errorf(t, "unexpected %q", t.text)
}

// caseWhen parses the rest of CASE [x] WHEN a THEN b ... [ELSE e] END.
func (p *parser) caseWhen(t token) (*node, error) {
	n := &node{op: "case", pos: t.pos}
	if !p.isKeyword("WHEN") {
		x, err := p.or()
		if err != nil {
			return nil, err
		}
		n.star = true
		n.args = append(n.args, x)
	}
	for p.keyword("WHEN") {
		w, err := p.or()
		if err != nil {
			return nil, err
		}
		if !p.keyword("THEN") {
			return nil, p.errorf(p.peek(), "expected THEN in CASE")
		}
		v, err := p.or()
		if err != nil {
			return nil, err
		}
		n.args = append(n.args, w, v)
	}
	if len(n.args) < 2 || (n.star && len(n.args) < 3) {
		return nil, p.errorf(p.peek(), "expected WHEN in CASE")
	}
	if p.keyword("ELSE") {
		e, err := p.or()
		if err != nil {
			return nil, err
		}
		n.args = append(n.args, e)
		n.num = 1
	}
	if !p.keyword("END") {
		return nil, p.errorf(p.peek(), "expected END to close CASE")
	}
	return n, nil
}
