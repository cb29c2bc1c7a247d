package rules

import (
	"testing"
)

// TestSetMatchesPlans: plans driven by a Set give the outputs they give
// alone, through checkpoints restored into fresh plans of a new Set, and
// with a key index that fills up.
func TestSetMatchesPlans(t *testing.T) {
	specs := statefulSpecs()
	var names []string
	for name := range specs {
		names = append(names, name)
	}
	compileAll := func() []*Plan {
		var ps []*Plan
		for _, name := range names {
			sp := specs[name]
			sp.Name = name
			ps = append(ps, mustCompile(t, sp))
		}
		// Two group_bys, and a plan without.
		ps = append(ps, mustCompile(t, Spec{Name: "by_s", GroupBy: []string{"s"}, Tumbling: 3 * s, Select: allAggs[1:]}),
			mustCompile(t, Spec{Name: "by_ds", GroupBy: []string{"d", "s"}, Window: Window{Kind: Hopping, Size: 4 * s, Every: 2 * s}, Select: allAggs}),
			mustCompile(t, Spec{Name: "plain", Select: []SelectItem{{"v", "v * 2"}}}))
		return ps
	}
	for _, limit := range []int{maxKeyIDs, 3} {
		rs := opRecords(11, 900)
		// Alone, record by record, with a tick after each batch of 50.
		alone := compileAll()
		want := make([][]string, len(alone))
		for i, p := range alone {
			var out []Output
			for b := 0; b < len(rs); b += 50 {
				for _, r := range rs[b:min(b+50, len(rs))] {
					out = p.Process(r, out)
				}
				out = p.Tick(rs[min(b+50, len(rs))-1].Time, out)
			}
			want[i] = render(p.Flush(out))
		}
		ps := compileAll()
		set := NewSet(ps...)
		for _, x := range set.indexes {
			x.max = limit
		}
		got := make([][]string, len(ps))
		stores := make([]store, len(ps))
		emit := func(i int, outs []Output) { got[i] = append(got[i], render(outs)...) }
		for b := 0; b < len(rs); b += 50 {
			if b == 450 {
				// Restart: the state saved so far, restored into new plans.
				fresh := compileAll()
				for i, p := range ps {
					stores[i] = newStore()
					stores[i].apply(p.Checkpoint())
					if err := fresh[i].Restore(stores[i].entries()); err != nil {
						t.Fatal(err)
					}
				}
				ps, set = fresh, NewSet(fresh...)
				for _, x := range set.indexes {
					x.max = limit
				}
			}
			if b == 700 {
				// A config swap keeps the plans in a new Set.
				set = NewSet(ps...)
			}
			set.ProcessBatch(rs[b:min(b+50, len(rs))], emit)
			checkCleared(t, set)
			for i, p := range ps {
				emit(i, p.Tick(rs[min(b+50, len(rs))-1].Time, nil))
			}
		}
		for i, p := range ps {
			got[i] = append(got[i], render(p.Flush(nil))...)
			diff(t, p.Name(), got[i], want[i])
		}
		if n := len(set.indexes); n != 3 {
			t.Errorf("%d key indexes, want 3 (d; s; d, s)", n)
		}
	}
}

// TestPlanInTwoSets: a plan driven by two Sets in turn, whose key numbers
// differ, gives what it gives alone.
func TestPlanInTwoSets(t *testing.T) {
	spec := Spec{Name: "t", GroupBy: []string{"d"}, Tumbling: 5 * s, Select: allAggs}
	rs := opRecords(13, 600)
	want := run(mustCompile(t, spec), rs, false)
	p := mustCompile(t, spec)
	a, b := NewSet(p), NewSet(p)
	for i := len(rs) - 1; i >= 0; i-- { // b numbers the keys in another order
		b.indexes[0].id(rs[i])
	}
	for i := range rs {
		a.indexes[0].id(rs[i])
	}
	if a.indexes[0].id(rs[0]) == b.indexes[0].id(rs[0]) {
		t.Fatal("the two sets number the first key alike: the test shows nothing")
	}
	var got []string
	emit := func(_ int, outs []Output) { got = append(got, render(outs)...) }
	for i := 0; i < len(rs); i += 30 {
		set := a
		if i/30%2 == 1 {
			set = b
		}
		set.ProcessBatch(rs[i:min(i+30, len(rs))], emit)
	}
	diff(t, "two sets", got, want)
}

// checkCleared fails unless the Set's output slice holds no output after
// a batch, up to its capacity: none may keep a record's strings alive.
func checkCleared(t *testing.T, set *Set) {
	t.Helper()
	for i, o := range set.out[:cap(set.out)] {
		if o.Rule != "" || o.Key != nil || o.Values != nil || o.Event != "" || !o.Time.IsZero() || !o.WindowStart.IsZero() || !o.WindowEnd.IsZero() {
			t.Fatalf("output %d of %d left after the batch: %+v", i, cap(set.out), o)
		}
	}
}
