package rules

import (
	"errors"
	"math/rand/v2"
	"testing"
	"time"
)

var allAggs = []SelectItem{{"d", "d"}, {"n", "count(*)"}, {"sum", "sum(v)"}, {"avg", "avg(v)"}, {"min", "min(v)"}, {"max", "max(v)"},
	{"first", "first(v)"}, {"last", "last(s)"}, {"sd", "stddev(v)"}, {"p95", "quantile(v, 0.95)"}, {"distinct", "count_distinct(s)"},
	{"delta", "delta(c)"}, {"rate", "rate(c)"}}

// statefulSpecs has one rule per stateful operator.
func statefulSpecs() map[string]Spec {
	et := EventTime{Field: "ts", Lateness: 3 * time.Second}
	return map[string]Spec{
		"tumbling":  {GroupBy: []string{"d"}, Tumbling: 5 * time.Second, Select: allAggs, Having: "n > 1"},
		"hopping":   {GroupBy: []string{"d"}, Window: Window{Kind: Hopping, Size: 6 * time.Second, Every: 2 * time.Second}, Select: allAggs},
		"sliding":   {GroupBy: []string{"d"}, Window: Window{Kind: Sliding, Size: 3 * time.Second}, Select: allAggs},
		"session":   {GroupBy: []string{"d"}, Window: Window{Kind: Session, Gap: 1500 * time.Millisecond}, Select: allAggs},
		"count":     {GroupBy: []string{"d"}, Window: Window{Kind: Count, Count: 7}, Select: allAggs},
		"eventtime": {GroupBy: []string{"d"}, Tumbling: 4 * time.Second, EventTime: et, Select: allAggs},
		"eventsess": {GroupBy: []string{"d"}, Window: Window{Kind: Session, Gap: 2 * time.Second}, EventTime: et, Select: allAggs},
		"alert":     {GroupBy: []string{"d"}, Select: []SelectItem{{"v", "v"}}, Alert: &Alert{When: "v > 60", For: time.Second, ClearWhen: "v < 40"}},
		"winalert":  {GroupBy: []string{"d"}, Tumbling: 3 * time.Second, Select: []SelectItem{{"a", "avg(v)"}}, Alert: &Alert{When: "a > 50"}},
		"pattern": {GroupBy: []string{"d"}, Select: []SelectItem{{"v", "v"}}, Pattern: []PatternStep{
			{When: "v > 80"}, {When: "v < 20", Within: 5 * time.Second}, {When: "v > 90", Within: 2 * time.Second, Absent: true}}},
		"deadband": {GroupBy: []string{"d"}, Select: []SelectItem{{"v", "v"}, {"s", "s"}}, Deadband: &Deadband{Fields: []string{"v"}, Abs: 20, Heartbeat: 3 * time.Second}},
		"dedup":    {GroupBy: []string{"d"}, Select: []SelectItem{{"s", "s"}}, Dedup: true},
		// learning functions
		"anomaly":     {GroupBy: []string{"d"}, Select: []SelectItem{{"a", "anomaly_score(v)"}}},
		"zscore":      {GroupBy: []string{"d"}, Select: []SelectItem{{"z", "zscore(v, 20)"}}},
		"ewma":        {GroupBy: []string{"d"}, Select: []SelectItem{{"e", "ewma(v, 0.3)"}}},
		"forecast":    {GroupBy: []string{"d"}, Select: []SelectItem{{"f", "forecast(v, 3)"}, {"hw", "forecast(v, 2, 12)"}}},
		"changepoint": {GroupBy: []string{"d"}, Select: []SelectItem{{"c", "changepoint(c, 4)"}}},
		"onekey":      {Select: []SelectItem{{"a", "anomaly_score(v)"}, {"z", "zscore(c)"}}},
		"winml": {GroupBy: []string{"d"}, Tumbling: 2 * time.Second,
			Select: []SelectItem{{"m", "avg(v)"}, {"a", "anomaly_score(avg(v))"}, {"f", "forecast(avg(v), 1)"}}},
		"mlalert": {GroupBy: []string{"d"}, Select: []SelectItem{{"z", "zscore(v, 20)"}}, Alert: &Alert{When: "z > 1.2", ClearWhen: "z < 0"}},
	}
}

// opRecords makes n records of 4 devices: v random 0–100, s one of 3
// strings, c a counter that resets, ts an event time (ms) up to 2 s behind.
func opRecords(seed uint64, n int) []*Record {
	rng := rand.New(rand.NewPCG(seed, 7))
	rs := make([]*Record, n)
	at, counter := t0, 0.0
	for i := range rs {
		at = at.Add(time.Duration(rng.IntN(400)) * time.Millisecond)
		counter += float64(rng.IntN(10))
		if rng.IntN(50) == 0 {
			counter = 0
		}
		ts := at.Add(-time.Duration(rng.IntN(2000)) * time.Millisecond)
		r := rec("d", string(rune('a'+rng.IntN(4))), "v", float64(rng.IntN(1000))/10, "s", []string{"on", "off", "idle"}[rng.IntN(3)],
			"c", counter, "ts", float64(ts.UnixMilli()))
		r.Time = at
		rs[i] = r
	}
	return rs
}

// TestSnapshotRestore processes half the records (checkpointing now and
// then), restores the saved state into a fresh plan, processes the rest, and
// expects the outputs of processing everything in one plan.
func TestSnapshotRestore(t *testing.T) {
	for name, spec := range statefulSpecs() {
		spec.Name = name
		for _, seed := range []uint64{1, 2, 3} {
			rs := opRecords(seed, 600)
			want := run(mustCompile(t, spec), rs, true)
			if len(want) < 5 {
				t.Errorf("%s: only %d outputs: the test shows little", name, len(want))
			}
			p := mustCompile(t, spec)
			st := newStore()
			var got []string
			half := len(rs) / 2
			for i, r := range rs[:half] {
				got = append(got, run(p, []*Record{r}, true)...)
				if i%37 == 0 {
					st.apply(p.Checkpoint())
				}
			}
			st.apply(p.Checkpoint())
			if p.Dirty() {
				t.Errorf("%s: dirty after a checkpoint", name)
			}
			q := mustCompile(t, spec)
			if err := q.Restore(st.entries()); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			got = append(got, run(q, rs[half:], true)...)
			diff(t, name, got, want)
			// The state saved at the end is what the plan holds.
			st.apply(q.Checkpoint())
			r := mustCompile(t, spec)
			if err := r.Restore(st.entries()); err != nil {
				t.Fatal(err)
			}
			diff(t, name+" final flush", render(r.Flush(nil)), render(q.Flush(nil)))
		}
	}
}

func TestRestoreRefusesAnotherShape(t *testing.T) {
	specs := statefulSpecs()
	a, b := specs["tumbling"], specs["session"]
	a.Name, b.Name = "x", "x"
	p := mustCompile(t, a)
	run(p, opRecords(1, 50), true)
	st := newStore()
	st.apply(p.Checkpoint())
	q := mustCompile(t, b)
	if err := q.Restore(st.entries()); !errors.Is(err, ErrBadState) {
		t.Errorf("restore into another rule: %v", err)
	}
	if out := q.Flush(nil); len(out) != 0 {
		t.Errorf("took foreign state: %v", render(out))
	}
	// Damaged entries are skipped and reported; the rest is restored.
	es := st.entries()
	for i := range es {
		if es[i].Key != metaKey {
			es[i].Value = es[i].Value[:len(es[i].Value)/2]
			break
		}
	}
	r := mustCompile(t, a)
	if err := r.Restore(es); !errors.Is(err, ErrBadState) {
		t.Errorf("damaged entry: %v", err)
	}
}

func TestTombstonesCompact(t *testing.T) {
	spec := statefulSpecs()["count"]
	spec.Name = "c"
	p := mustCompile(t, spec)
	st := newStore()
	for i, r := range opRecords(4, 5000) {
		p.Process(r, nil)
		if i%10 == 0 {
			st.apply(p.Checkpoint())
		}
	}
	st.apply(p.Checkpoint())
	if len(st) > 300 {
		t.Errorf("%d entries saved for at most 4 groups: deletions are not compacted", len(st))
	}
}
