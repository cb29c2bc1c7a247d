package rules

import (
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// exactAggs are the aggregates whose merge is exact, so that a hopping
// window merged from slices equals one that saw every record.
var exactAggs = []SelectItem{{"d", "d"}, {"n", "count(*)"}, {"min", "min(v)"}, {"max", "max(v)"}, {"first", "first(v)"},
	{"last", "last(s)"}, {"p50", "median(v)"}, {"p95", "quantile(v, 0.95)"}, {"distinct", "count_distinct(s)"}}

// unsliced turns a hopping plan back into one that folds each record into
// every window it belongs to, the reference for the sliced form.
func unsliced(t *testing.T, p *Plan) *Plan {
	t.Helper()
	w, ok := p.wins.(*timeWindows)
	if !ok || !w.sliced {
		t.Fatalf("%s: not a sliced hopping window", p.name)
	}
	w.sliced, w.merged = false, nil
	return p
}

// TestSlicedHoppingMatchesWindows feeds the same records, with ticks, a
// flush halfway and a flush at the end, to a sliced hopping plan and to the
// same plan folding each record into every window, and expects the same
// outputs.
func TestSlicedHoppingMatchesWindows(t *testing.T) {
	specs := map[string]Spec{
		"arrival": {GroupBy: []string{"d"}, Window: Window{Kind: Hopping, Size: 6 * s, Every: 2 * s}, Select: exactAggs},
		"counter": {GroupBy: []string{"d"}, Window: Window{Kind: Hopping, Size: 3 * s, Every: time.Second},
			Select: []SelectItem{{"delta", "delta(c)"}, {"rate", "rate(c)"}}},
		"eventtime": {GroupBy: []string{"d"}, Window: Window{Kind: Hopping, Size: 4 * s, Every: time.Second},
			EventTime: EventTime{Field: "ts", Lateness: 3 * time.Second}, Select: exactAggs},
	}
	for name, spec := range specs {
		spec.Name = name
		for _, seed := range []uint64{1, 2, 3} {
			rs := opRecords(seed, 500)
			feed := func(p *Plan) []string {
				var out []Output
				for i, r := range rs {
					out = p.Process(r, out)
					out = p.Tick(r.Time, out)
					if i == len(rs)/2 {
						out = p.Flush(out)
					}
				}
				return render(p.Flush(out))
			}
			want := feed(unsliced(t, mustCompile(t, spec)))
			got := feed(mustCompile(t, spec))
			if len(want) < 100 {
				t.Fatalf("%s: only %d outputs", name, len(want))
			}
			diff(t, name, got, want)
		}
	}
}

// TestOldHoppingCheckpointFailsCleanly restores state saved before hopping
// windows were sliced (a group per window, ending at start+size): it is
// refused with ErrBadState, and the plan goes on from empty groups without
// counting those windows' records twice.
func TestOldHoppingCheckpointFailsCleanly(t *testing.T) {
	spec := sumSpec(Window{Kind: Hopping, Size: 10 * s, Every: 5 * s})
	p := mustCompile(t, spec)
	run(p, []*Record{at(1*s, "d", "a", "v", 1), at(6*s, "d", "a", "v", 2)}, false)
	st := newStore()
	st.apply(p.Checkpoint())
	es := st.entries()
	old := 0
	for i, e := range es {
		if e.Key == metaKey {
			continue
		}
		// The layout is the same; an old group spans the window.
		v := slices.Clone(e.Value)
		start := int64(binary.LittleEndian.Uint64(v))
		binary.LittleEndian.PutUint64(v[8:], uint64(start+int64(10*s)))
		es[i].Value = v
		old++
	}
	if old != 2 {
		t.Fatalf("%d group entries, want 2 (one per slice)", old)
	}
	q := mustCompile(t, spec)
	if err := q.Restore(es); !errors.Is(err, ErrBadState) {
		t.Fatalf("restore of an old hopping checkpoint: %v, want ErrBadState", err)
	}
	got := run(q, []*Record{at(7*s, "d", "a", "v", 4)}, false)
	got = append(got, render(q.Tick(t0.Add(20*s), nil))...)
	diff(t, "after a refused restore", got, []string{
		`{"rule":"w","ts":"2026-11-25T09:00:10Z","window":{"start":"2026-11-25T09:00:00Z","end":"2026-11-25T09:00:10Z"},"key":{"d":"a"},"values":{"d":"a","sum":4,"n":1}}`,
		`{"rule":"w","ts":"2026-11-25T09:00:15Z","window":{"start":"2026-11-25T09:00:05Z","end":"2026-11-25T09:00:15Z"},"key":{"d":"a"},"values":{"d":"a","sum":4,"n":1}}`,
	})
}

// TestSharedAccumulators: aggregates with the same state and argument share
// one accumulator, and give what each gives alone.
func TestSharedAccumulators(t *testing.T) {
	items := []SelectItem{{"sum", "sum(v)"}, {"avg", "avg(v)"}, {"min", "min(v)"}, {"max", "max(v)"}, {"p50", "median(v)"},
		{"p95", "quantile(v, 0.95)"}, {"sd", "stddev(v)"}, {"var", "variance(v)"}, {"delta", "delta(c)"}, {"rate", "rate(c)"},
		{"n", "count(*)"}, {"n2", "count(*) + 0"}, {"s2", "sum(v * 2)"}, {"s3", "sum(2 * v)"}}
	shared := mustCompile(t, Spec{Name: "r", GroupBy: []string{"d"}, Tumbling: 5 * s, Select: items})
	// sum avg min max | quantile median | stddev variance | delta rate | count(*) | sum(v*2) | sum(2*v)
	if len(shared.aggs) != 7 {
		t.Errorf("%d accumulators, want 7", len(shared.aggs))
	}
	rs := opRecords(5, 400)
	var got []Output
	for _, r := range rs {
		got = shared.Process(r, got)
	}
	got = shared.Flush(got)
	for i, it := range items {
		alone := mustCompile(t, Spec{Name: "r", GroupBy: []string{"d"}, Tumbling: 5 * s, Select: []SelectItem{it}})
		var want []Output
		for _, r := range rs {
			want = alone.Process(r, want)
		}
		want = alone.Flush(want)
		if len(want) != len(got) || len(want) < 50 {
			t.Fatalf("%s: %d outputs alone, %d shared", it.Name, len(want), len(got))
		}
		for j := range want {
			w, g := want[j].Values[0], got[j].Values[i]
			if w.Value != g.Value {
				t.Errorf("%s, window %d: %v shared, %v alone", it.Name, j, g.Value, w.Value)
				break
			}
		}
	}
	// An argument that calls a function is not shared (a function may keep
	// state, as the learning functions do).
	p := mustCompile(t, Spec{Name: "r", GroupBy: []string{"d"}, Tumbling: 5 * s,
		Select: []SelectItem{{"a", "avg(abs(v))"}, {"b", "max(abs(v))"}}})
	if len(p.aggs) != 2 {
		t.Errorf("%d accumulators for arguments that call functions, want 2", len(p.aggs))
	}
}

// TestCheckpointOfUnsharedAccumulatorsFailsCleanly: state saved when each
// aggregate had its own accumulator no longer fits the rule, and Restore
// says so instead of misreading it.
func TestCheckpointOfUnsharedAccumulatorsFailsCleanly(t *testing.T) {
	spec := Spec{Name: "r", GroupBy: []string{"d"}, Tumbling: 5 * s, Select: []SelectItem{{"a", "avg(v)"}, {"m", "max(v)"}}}
	// The old layout had two accumulators: what a rule of two does today.
	two := mustCompile(t, Spec{Name: "r", GroupBy: []string{"d"}, Tumbling: 5 * s, Select: []SelectItem{{"a", "avg(v)"}, {"m", "max(w)"}}})
	run(two, opRecords(1, 20), false)
	st := newStore()
	st.apply(two.Checkpoint())
	p := mustCompile(t, spec)
	meta := slices.Clone(st[metaKey])
	binary.LittleEndian.PutUint64(meta, p.Fingerprint())
	st[metaKey] = meta
	if err := p.Restore(st.entries()); !errors.Is(err, ErrBadState) {
		t.Fatalf("restore: %v, want ErrBadState", err)
	}
	if out := p.Flush(nil); len(out) != 0 {
		t.Errorf("restored %d windows from a checkpoint that does not fit", len(out))
	}
}

// TestProcessBatch gives what Process gives record by record.
func TestProcessBatch(t *testing.T) {
	for name, spec := range statefulSpecs() {
		spec.Name = name
		rs := opRecords(9, 300)
		p, q := mustCompile(t, spec), mustCompile(t, spec)
		var want, got []Output
		for _, r := range rs {
			want = p.Process(r, want)
		}
		for i := 0; i < len(rs); i += 64 {
			got = q.ProcessBatch(rs[i:min(i+64, len(rs))], got)
		}
		diff(t, name, render(got), render(want))
	}
}

// TestSketchNotesThenCounts: a sketch that notes values before counting
// them answers, merges and saves exactly as one that counts each value.
func TestSketchNotesThenCounts(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{1, 5, sketchFew - 1, sketchFew, sketchFew + 1, 500} {
		var xs []float64
		for range n {
			x := math.Exp(rng.NormFloat64() * 3)
			switch rng.IntN(5) {
			case 0:
				x = -x
			case 1:
				x = 0
			}
			xs = append(xs, x)
		}
		// Reference: every value counted at once.
		var ref sketch
		for _, x := range xs {
			ref.n++
			switch {
			case x > sketchMinValue:
				ref.pos.add(sketchIndex(x), 1)
				ref.counted++
			case x < -sketchMinValue:
				ref.neg.add(sketchIndex(-x), 1)
				ref.counted++
			default:
				ref.zero++
			}
		}
		// Split across three sketches, merged.
		var parts [3]sketch
		for i, x := range xs {
			parts[i%3].add(x)
		}
		var merged sketch
		for i := range parts {
			merged.merge(&parts[i])
		}
		var whole sketch
		for _, x := range xs {
			whole.add(x)
		}
		for _, q := range []float64{0, 0.1, 0.5, 0.9, 0.99, 1} {
			w := ref.quantile(q)
			if g := whole.quantile(q); g != w {
				t.Errorf("n=%d q=%v: %v, want %v", n, q, g, w)
			}
			if g := merged.quantile(q); g != w {
				t.Errorf("n=%d q=%v merged: %v, want %v", n, q, g, w)
			}
		}
		if a, b := string(whole.appendBinary(nil)), string(ref.appendBinary(nil)); a != b {
			t.Errorf("n=%d: saved form differs", n)
		}
		if a, b := string(merged.appendBinary(nil)), string(ref.appendBinary(nil)); a != b {
			t.Errorf("n=%d: saved form of the merge differs", n)
		}
	}
}

// TestSketchInfinity: an infinite value counts in the bucket of the
// largest number, whose value reads back as infinite (the output writes it
// as null), instead of overflowing a bucket number.
func TestSketchInfinity(t *testing.T) {
	for _, few := range []bool{true, false} {
		var sk sketch
		sk.add(math.Inf(1))
		sk.add(1)
		sk.add(math.Inf(-1))
		if !few {
			sk.count()
		}
		lo, mid, hi := sk.quantile(0), sk.quantile(0.5), sk.quantile(1)
		if !math.IsInf(lo, -1) || math.Abs(mid-1) > 0.01 || !math.IsInf(hi, 1) {
			t.Errorf("few %v: quantiles %v %v %v, want -Inf, about 1, +Inf", few, lo, mid, hi)
		}
	}
}

// TestSavedStateIsTheState checkpoints after every record and now and then
// restores what was saved into a fresh plan: the fresh plan's state, saved
// whole, is what the store holds. State objects are reused (groups of closed
// windows, alerts that ended) while still listed for the next checkpoint;
// this is where a reuse that wrote under the wrong key would show.
func TestSavedStateIsTheState(t *testing.T) {
	for name, spec := range statefulSpecs() {
		spec.Name = name
		p := mustCompile(t, spec)
		st := newStore()
		for i, r := range opRecords(21, 400) {
			p.Process(r, nil)
			if i%3 == 0 {
				p.Tick(r.Time, nil)
			}
			st.apply(p.Checkpoint())
			if i%40 != 39 {
				continue
			}
			q := mustCompile(t, spec)
			if err := q.Restore(st.entries()); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			whole := newStore()
			whole.apply(q.Checkpoint())
			if len(whole) != len(st) {
				t.Errorf("%s, record %d: %d entries saved, %d restored", name, i, len(st), len(whole))
				break
			}
			for k, v := range st {
				if string(whole[k]) != string(v) {
					t.Errorf("%s, record %d: entry %q differs once restored", name, i, k)
					break
				}
			}
		}
	}
}
