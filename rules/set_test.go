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
