package rules

import (
	"errors"
	"strconv"
	"strings"
	"time"
)

// ParseSQL reads a rule written as a query and returns its Spec, which
// Compile turns into the same plan as the structured form of the rule:
//
//	SELECT device, avg(temperature) AS avg_t, count(*) AS n
//	FROM telemetry [TIMESTAMP BY ts [LATENESS 10s] [EMIT LATE]]
//	[WHERE temperature BETWEEN -40 AND 150]
//	[GROUP BY device, TUMBLING(1m)]
//	[HAVING count(*) > 0]
//
// Windows in GROUP BY: TUMBLING(size), HOPPING(size, every), SLIDING(size),
// SESSION(gap), COUNT_WINDOW(n); durations as in Go (1m, 1m30s, 500ms) or as
// strings. SELECT * (or *, expr AS name) passes a record's fields. A select
// item without AS is named after its field (device), or its aggregate and
// field (avg_temperature; count(*) is count).
//
// ParseSQL also compiles the spec, so every error it returns, of syntax or of
// meaning, is a *SpecError naming the rule with a *PosError inside whose line
// and column are those of the query.
func ParseSQL(name, src string) (Spec, error) { return ParseSQLWith(name, src, Options{}) }

// ParseSQLWith is ParseSQL for a query that may call the models of o.
func ParseSQLWith(name, src string, o Options) (Spec, error) {
	toks, err := lex(src)
	if err != nil {
		return Spec{}, &SpecError{Rule: name, Field: "sql", Err: err}
	}
	q := &sqlParser{parser: parser{src: src, toks: toks}, offsets: map[string]int{}}
	s, err := q.statement(name)
	if err != nil {
		return Spec{}, &SpecError{Rule: name, Field: "sql", Err: err}
	}
	if _, err := compile(s, o); err != nil {
		return Spec{}, q.remap(name, err)
	}
	return s, nil
}

type sqlParser struct {
	parser
	offsets map[string]int // spec field → byte offset of its text in the query
}

var windowFuncs = map[string]bool{"TUMBLING": true, "HOPPING": true, "SLIDING": true, "SESSION": true, "COUNT_WINDOW": true, "COUNTWINDOW": true}

func (q *sqlParser) statement(name string) (Spec, error) {
	s := Spec{Name: name}
	if !q.keyword("SELECT") {
		return s, q.errorf(q.peek(), "expected SELECT")
	}
	q.offsets["select"] = q.peek().pos
	for {
		if err := q.selectItem(&s); err != nil {
			return s, err
		}
		if _, ok := q.op(","); !ok {
			break
		}
	}
	if !q.keyword("FROM") {
		return s, q.errorf(q.peek(), "expected , or FROM after a select item")
	}
	from := q.next()
	if from.kind != tokIdent {
		return s, q.errorf(from, "expected the name of an input after FROM")
	}
	s.From = from.text
	if q.isKeyword("TIMESTAMP") {
		q.offsets["event_time"] = q.peek().pos
		q.i++
		if !q.keyword("BY") {
			return s, q.errorf(q.peek(), "expected BY after TIMESTAMP")
		}
		f := q.next()
		if f.kind != tokIdent {
			return s, q.errorf(f, "expected a field after TIMESTAMP BY")
		}
		s.EventTime.Field = f.text
		if q.keyword("LATENESS") {
			d, err := q.duration()
			if err != nil {
				return s, err
			}
			s.EventTime.Lateness = d
		}
		if q.isKeyword("EMIT") {
			q.i++
			if !q.keyword("LATE") {
				return s, q.errorf(q.peek(), "expected LATE after EMIT")
			}
			s.EventTime.Late = LateEmit
		}
	}
	if q.keyword("WHERE") {
		src, off, err := q.exprText()
		if err != nil {
			return s, err
		}
		s.Where, q.offsets["where"] = src, off
	}
	if q.isKeyword("GROUP") {
		q.offsets["group_by"] = q.peek().pos
		q.i++
		if !q.keyword("BY") {
			return s, q.errorf(q.peek(), "expected BY after GROUP")
		}
		for {
			if err := q.groupItem(&s); err != nil {
				return s, err
			}
			if _, ok := q.op(","); !ok {
				break
			}
		}
	}
	if q.keyword("HAVING") {
		src, off, err := q.exprText()
		if err != nil {
			return s, err
		}
		s.Having, q.offsets["having"] = src, off
	}
	q.op(";")
	if t := q.peek(); t.kind != tokEOF {
		return s, q.errorf(t, "unexpected %q", t.text)
	}
	return s, nil
}

// exprText parses an expression and returns its source text and offset.
func (q *sqlParser) exprText() (string, int, error) {
	start := q.peek()
	if _, err := q.or(); err != nil {
		return "", 0, err
	}
	end := q.peek().pos
	return strings.TrimSpace(q.src[start.pos:end]), start.pos, nil
}

func (q *sqlParser) selectItem(s *Spec) error {
	if t, ok := q.op("*"); ok {
		s.Select = append(s.Select, SelectItem{Name: "*", Expr: "*"})
		q.offsets["select.*"] = t.pos
		return nil
	}
	start := q.peek()
	n, err := q.or()
	if err != nil {
		return err
	}
	src := strings.TrimSpace(q.src[start.pos:q.peek().pos])
	var name string
	if q.keyword("AS") {
		t := q.next()
		if t.kind != tokIdent {
			return q.errorf(t, "expected a name after AS")
		}
		name = t.text
	} else if name = defaultName(n); name == "" {
		return q.errorf(start, "name this item with AS")
	}
	if _, dup := q.offsets["select."+name]; !dup {
		q.offsets["select."+name] = start.pos
	}
	s.Select = append(s.Select, SelectItem{Name: name, Expr: src})
	return nil
}

// defaultName names a select item without AS: a field by its name, an
// aggregate of a field by both (avg_temperature), count(*) as count.
func defaultName(n *node) string {
	switch {
	case n.op == "field":
		return n.str
	case n.op == "call" && aggregates[n.str] != nil && (n.star || len(n.args) == 0):
		return n.str
	case n.op == "call" && aggregates[n.str] != nil && len(n.args) == 1 && n.args[0].op == "field":
		return n.str + "_" + strings.ReplaceAll(n.args[0].str, ".", "_")
	}
	return ""
}

func (q *sqlParser) groupItem(s *Spec) error {
	t := q.next()
	if t.kind != tokIdent {
		return q.errorf(t, "expected a field or a window in GROUP BY")
	}
	kw := strings.ToUpper(t.text)
	if _, call := q.op("("); !call {
		s.GroupBy = append(s.GroupBy, t.text)
		return nil
	}
	if !windowFuncs[kw] {
		return q.errorf(t, "GROUP BY takes fields and one of TUMBLING, HOPPING, SLIDING, SESSION, COUNT_WINDOW; not %s()", t.text)
	}
	if s.Window.Kind != NoWindow {
		return q.errorf(t, "a rule has one window")
	}
	q.offsets["window"] = t.pos
	var err error
	switch kw {
	case "TUMBLING":
		s.Window.Kind = Tumbling
		s.Window.Size, err = q.duration()
	case "SLIDING":
		s.Window.Kind = Sliding
		s.Window.Size, err = q.duration()
	case "SESSION":
		s.Window.Kind = Session
		s.Window.Gap, err = q.duration()
	case "HOPPING":
		s.Window.Kind = Hopping
		if s.Window.Size, err = q.duration(); err == nil {
			if _, ok := q.op(","); !ok {
				return q.errorf(q.peek(), "HOPPING takes (size, every)")
			}
			s.Window.Every, err = q.duration()
		}
	default:
		s.Window.Kind = Count
		n := q.next()
		c, perr := strconv.Atoi(n.text)
		if n.kind != tokNumber || perr != nil {
			return q.errorf(n, "COUNT_WINDOW takes a whole number of records")
		}
		s.Window.Count = c
	}
	if err != nil {
		return err
	}
	if _, ok := q.op(")"); !ok {
		return q.errorf(q.peek(), "expected ) after the window's arguments")
	}
	return nil
}

// duration reads 1m, 1m30s, 500ms (a number and its unit, adjacent) or a
// quoted '1m'.
func (q *sqlParser) duration() (time.Duration, error) {
	t := q.next()
	text := t.text
	switch t.kind {
	case tokNumber:
		if u := q.peek(); u.kind == tokIdent && u.pos == t.pos+len(t.text) {
			text += u.text
			q.i++
		}
	case tokString:
	default:
		return 0, q.errorf(t, "expected a duration like 1m or 30s")
	}
	d, err := time.ParseDuration(text)
	if err != nil {
		return 0, q.errorf(t, "bad duration %q: use a unit, like 1m, 30s or 500ms", text)
	}
	return d, nil
}

// remap turns an error of compiling the parsed spec into one at its place in
// the query.
func (q *sqlParser) remap(name string, err error) error {
	var se *SpecError
	if !errors.As(err, &se) {
		return err
	}
	field := se.Field
	off, ok := q.offsets[field]
	if !ok {
		prefix, _, _ := strings.Cut(field, ".")
		if off, ok = q.offsets[prefix]; !ok {
			off = 0
		}
	}
	var pe *PosError
	if errors.As(se.Err, &pe) && (field == "where" || field == "having" || strings.HasPrefix(field, "select.")) {
		off += byteOffset(q.src[off:], pe.Line, pe.Column)
		moved := posErrorf(q.src, off, "%s", pe.Msg).(*PosError)
		moved.Err = pe.Err
		return &SpecError{Rule: name, Field: "sql", Err: moved}
	}
	return &SpecError{Rule: name, Field: "sql", Err: posErrorf(q.src, off, "%s: %v", field, se.Err)}
}

// byteOffset converts a 1-based line and column of src to a byte offset.
func byteOffset(src string, line, col int) int {
	i := 0
	for l := 1; l < line && i < len(src); i++ {
		if src[i] == '\n' {
			l++
		}
	}
	return min(i+col-1, len(src))
}
