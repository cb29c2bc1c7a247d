package rules

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// store is what the buffer does with a plan's state changes.
type store map[string][]byte

func newStore() store { return store{} }

func (s store) apply(sc StateChange) {
	if sc.Reset {
		clear(s)
	}
	for _, e := range sc.Puts {
		if len(e.Value) == 0 {
			delete(s, e.Key)
		} else {
			s[e.Key] = append([]byte(nil), e.Value...)
		}
	}
}

// live counts saved entries other than the meta entry.
func (s store) live() int {
	n := 0
	for k := range s {
		if k != metaKey {
			n++
		}
	}
	return n
}

// entries returns the saved entries in key order, as the buffer loads them.
func (s store) entries() []StateEntry {
	var es []StateEntry
	for k, v := range s {
		es = append(es, StateEntry{Key: k, Value: v})
	}
	slices.SortFunc(es, func(a, b StateEntry) int { return strings.Compare(a.Key, b.Key) })
	return es
}

// mustCompile compiles s or fails the test.
func mustCompile(t testing.TB, s Spec) *Plan {
	t.Helper()
	p, err := Compile(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// render turns outputs into comparable lines.
func render(outs []Output) []string {
	var lines []string
	for _, o := range outs {
		lines = append(lines, string(o.AppendJSON(nil, nil)))
	}
	return lines
}

var t0 = time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)

// at is a record at t0+d.
func at(d time.Duration, fields ...any) *Record {
	r := rec(fields...)
	r.Time = t0.Add(d)
	return r
}

// run feeds records (and a Tick after each when tick is set) and returns the
// outputs rendered.
func run(p *Plan, rs []*Record, tick bool) []string {
	var out []Output
	for _, r := range rs {
		out = p.Process(r, out)
		if tick {
			out = p.Tick(r.Time, out)
		}
	}
	return render(out)
}

func diff(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s:\n got %d: %s\nwant %d: %s", what, len(got), strings.Join(got, "\n     "), len(want), strings.Join(want, "\n     "))
	}
}
