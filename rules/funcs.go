package rules

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// scalarFunc is a function of the expression language. bind returns the
// closure for one call site, so arguments are evaluated without a slice.
// Functions return Null for arguments of the wrong kind rather than failing.
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

// scalars is the registry of scalar functions; adding one is adding a line.
var scalars = map[string]*scalarFunc{
	// math
	"abs":   math1(math.Abs),
	"ceil":  math1(math.Ceil),
	"floor": math1(math.Floor),
	"sqrt":  math1(math.Sqrt),
	"exp":   math1(math.Exp),
	"ln":    math1(math.Log),
	"log10": math1(math.Log10),
	"sign": math1(func(x float64) float64 {
		switch {
		case x > 0:
			return 1
		case x < 0:
			return -1
		}
		return 0
	}),
	"pow":      math2(math.Pow),
	"power":    math2(math.Pow),
	"greatest": mathN(math.Max),
	"least":    mathN(math.Min),
	"round":    {1, 2, bindRound},
	"clamp": {3, 3, func(a []evalFn) evalFn {
		return func(r *Record, g *aggView) Value {
			x, lo, hi := a[0](r, g), a[1](r, g), a[2](r, g)
			if x.Kind != KindNumber || lo.Kind != KindNumber || hi.Kind != KindNumber {
				return Null
			}
			return Number(math.Min(math.Max(x.Num, lo.Num), hi.Num))
		}
	}},

	// conditional and types
	"coalesce": {1, -1, func(a []evalFn) evalFn {
		return func(r *Record, g *aggView) Value {
			for _, x := range a {
				if v := x(r, g); v.Kind != KindNull {
					return v
				}
			}
			return Null
		}
	}},
	"if": {3, 3, func(a []evalFn) evalFn {
		return func(r *Record, g *aggView) Value {
			if a[0](r, g).Truthy() {
				return a[1](r, g)
			}
			return a[2](r, g)
		}
	}},
	"nullif": {2, 2, func(a []evalFn) evalFn {
		return func(r *Record, g *aggView) Value {
			v := a[0](r, g)
			if c, ok := cmpValues(v, a[1](r, g)); ok && c == 0 {
				return Null
			}
			return v
		}
	}},
	"number": {1, 1, func(a []evalFn) evalFn {
		return func(r *Record, g *aggView) Value {
			v := a[0](r, g)
			switch v.Kind {
			case KindNumber:
				return v
			case KindBool:
				return Number(v.Num)
			case KindString:
				if f, err := strconv.ParseFloat(strings.TrimSpace(v.Str), 64); err == nil {
					return Number(f)
				}
			}
			return Null
		}
	}},
	"string": {1, 1, func(a []evalFn) evalFn {
		return func(r *Record, g *aggView) Value {
			v := a[0](r, g)
			if v.Kind == KindString || v.Kind == KindNull {
				return v
			}
			return String(string(v.AppendText(nil)))
		}
	}},

	// strings
	"lower":       str1(strings.ToLower),
	"upper":       str1(strings.ToUpper),
	"trim":        str1(strings.TrimSpace),
	"length":      {1, 1, bindLength},
	"len":         {1, 1, bindLength},
	"concat":      {1, -1, bindConcat},
	"substr":      {2, 3, bindSubstr},
	"substring":   {2, 3, bindSubstr},
	"replace":     {3, 3, bindReplace},
	"starts_with": strPred(strings.HasPrefix),
	"ends_with":   strPred(strings.HasSuffix),
	"contains":    strPred(strings.Contains),
	"split_part":  {3, 3, bindSplitPart},

	// the record and time
	"topic":       {0, 1, bindTopic},
	"event_time":  {0, 0, bindEventTime},
	"parse_time":  {1, 1, bindParseTime},
	"format_time": {1, 1, bindFormatTime},
	"hour":        timePart(func(t time.Time) int { return t.Hour() }),
	"minute":      timePart(func(t time.Time) int { return t.Minute() }),
	"weekday":     timePart(func(t time.Time) int { return int(t.Weekday()) }),
	"day":         timePart(func(t time.Time) int { return t.Day() }),
	"month":       timePart(func(t time.Time) int { return int(t.Month()) }),
	"year":        timePart(func(t time.Time) int { return t.Year() }),
}

func math1(f func(float64) float64) *scalarFunc {
	return &scalarFunc{1, 1, func(a []evalFn) evalFn {
		x := a[0]
		return func(r *Record, g *aggView) Value {
			v := x(r, g)
			if v.Kind != KindNumber {
				return Null
			}
			return Number(f(v.Num))
		}
	}}
}

func math2(f func(a, b float64) float64) *scalarFunc {
	return &scalarFunc{2, 2, func(a []evalFn) evalFn {
		return func(r *Record, g *aggView) Value {
			x, y := a[0](r, g), a[1](r, g)
			if x.Kind != KindNumber || y.Kind != KindNumber {
				return Null
			}
			return Number(f(x.Num, y.Num))
		}
	}}
}

// mathN folds f over its numeric arguments, skipping nulls.
func mathN(f func(a, b float64) float64) *scalarFunc {
	return &scalarFunc{1, -1, func(a []evalFn) evalFn {
		return func(r *Record, g *aggView) Value {
			out := Null
			for _, x := range a {
				v := x(r, g)
				if v.Kind != KindNumber {
					continue
				}
				if out.Kind == KindNull {
					out = v
				} else {
					out.Num = f(out.Num, v.Num)
				}
			}
			return out
		}
	}}
}

func bindRound(a []evalFn) evalFn {
	return func(r *Record, g *aggView) Value {
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
}

func str1(f func(string) string) *scalarFunc {
	return &scalarFunc{1, 1, func(a []evalFn) evalFn {
		return func(r *Record, g *aggView) Value {
			v := a[0](r, g)
			if v.Kind != KindString {
				return Null
			}
			return String(f(v.Str))
		}
	}}
}

func strPred(f func(s, x string) bool) *scalarFunc {
	return &scalarFunc{2, 2, func(a []evalFn) evalFn {
		return func(r *Record, g *aggView) Value {
			s, x := a[0](r, g), a[1](r, g)
			if s.Kind != KindString || x.Kind != KindString {
				return Null
			}
			return Bool(f(s.Str, x.Str))
		}
	}}
}

// bindLength: characters (runes) of a string.
func bindLength(a []evalFn) evalFn {
	return func(r *Record, g *aggView) Value {
		v := a[0](r, g)
		if v.Kind != KindString {
			return Null
		}
		return Number(float64(len([]rune(v.Str))))
	}
}

// bindConcat joins its arguments as text; nulls are skipped.
func bindConcat(a []evalFn) evalFn {
	return func(r *Record, g *aggView) Value {
		var b []byte
		for _, x := range a {
			b = x(r, g).AppendText(b)
		}
		return String(string(b))
	}
}

// bindSubstr is SQL's substr(s, start[, length]) with a 1-based start, in
// characters.
func bindSubstr(a []evalFn) evalFn {
	return func(r *Record, g *aggView) Value {
		s, st := a[0](r, g), a[1](r, g)
		if s.Kind != KindString || st.Kind != KindNumber {
			return Null
		}
		rs := []rune(s.Str)
		from := int(math.Max(st.Num, 1)) - 1
		if from >= len(rs) {
			return String("")
		}
		to := len(rs)
		if len(a) == 3 {
			l := a[2](r, g)
			if l.Kind != KindNumber {
				return Null
			}
			to = min(from+int(math.Max(l.Num, 0)), len(rs))
		}
		return String(string(rs[from:to]))
	}
}

func bindReplace(a []evalFn) evalFn {
	return func(r *Record, g *aggView) Value {
		s, old, nw := a[0](r, g), a[1](r, g), a[2](r, g)
		if s.Kind != KindString || old.Kind != KindString || nw.Kind != KindString {
			return Null
		}
		return String(strings.ReplaceAll(s.Str, old.Str, nw.Str))
	}
}

// bindSplitPart is split_part(s, sep, n): the nth (1-based) piece.
func bindSplitPart(a []evalFn) evalFn {
	return func(r *Record, g *aggView) Value {
		s, sep, n := a[0](r, g), a[1](r, g), a[2](r, g)
		if s.Kind != KindString || sep.Kind != KindString || n.Kind != KindNumber || sep.Str == "" {
			return Null
		}
		return String(nthPiece(s.Str, sep.Str, int(n.Num)))
	}
}

// nthPiece returns the nth (1-based) piece of s split by sep, without
// allocating; "" when there is none.
func nthPiece(s, sep string, n int) string {
	if n < 1 {
		return ""
	}
	for i := 1; ; i++ {
		j := strings.Index(s, sep)
		if i == n {
			if j < 0 {
				return s
			}
			return s[:j]
		}
		if j < 0 {
			return ""
		}
		s = s[j+len(sep):]
	}
}

// bindTopic: topic() is the record's topic; topic(n) its nth level (1-based).
func bindTopic(a []evalFn) evalFn {
	if len(a) == 0 {
		return func(r *Record, _ *aggView) Value { return String(r.Topic) }
	}
	return func(r *Record, g *aggView) Value {
		n := a[0](r, g)
		if n.Kind != KindNumber {
			return Null
		}
		return String(nthPiece(r.Topic, "/", int(n.Num)))
	}
}

// bindEventTime: the record's time in unix milliseconds (in a windowed
// select, the window's end).
func bindEventTime([]evalFn) evalFn {
	return func(r *Record, _ *aggView) Value {
		if r.Time.IsZero() {
			return Null
		}
		return Number(float64(r.Time.UnixMilli()))
	}
}

// bindParseTime: an RFC 3339 string, or unix seconds or milliseconds, to unix
// milliseconds.
func bindParseTime(a []evalFn) evalFn {
	return func(r *Record, g *aggView) Value {
		t, ok := timeOf(a[0](r, g))
		if !ok {
			return Null
		}
		return Number(float64(t) / 1e6)
	}
}

// bindFormatTime: unix milliseconds to an RFC 3339 string in UTC.
func bindFormatTime(a []evalFn) evalFn {
	return func(r *Record, g *aggView) Value {
		v := a[0](r, g)
		if v.Kind != KindNumber {
			return Null
		}
		return String(time.UnixMilli(int64(v.Num)).UTC().Format(time.RFC3339Nano))
	}
}

// timePart reads a part of a time (unix milliseconds or RFC 3339), in UTC.
func timePart(f func(time.Time) int) *scalarFunc {
	return &scalarFunc{1, 1, func(a []evalFn) evalFn {
		return func(r *Record, g *aggView) Value {
			ns, ok := timeOfMillis(a[0](r, g))
			if !ok {
				return Null
			}
			return Number(float64(f(time.Unix(0, ns).UTC())))
		}
	}}
}

// timeOfMillis reads a time given in unix milliseconds or as RFC 3339.
func timeOfMillis(v Value) (int64, bool) {
	if v.Kind == KindNumber {
		return int64(v.Num * 1e6), true
	}
	return timeOf(v)
}

// timeOf reads an event time: a number of unix seconds (below 1e11) or
// milliseconds, or an RFC 3339 string. It returns unix nanoseconds.
func timeOf(v Value) (int64, bool) {
	switch v.Kind {
	case KindNumber:
		if math.IsNaN(v.Num) || math.IsInf(v.Num, 0) {
			return 0, false
		}
		if math.Abs(v.Num) < 1e11 {
			return int64(v.Num * 1e9), true
		}
		if math.Abs(v.Num) < 9e15 {
			return int64(v.Num * 1e6), true
		}
	case KindString:
		t, err := time.Parse(time.RFC3339Nano, v.Str)
		if err == nil {
			return t.UnixNano(), true
		}
	}
	return 0, false
}
