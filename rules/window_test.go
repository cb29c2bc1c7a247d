package rules

import (
	"testing"
	"time"
)

const s = time.Second

func sumSpec(w Window) Spec {
	return Spec{Name: "w", GroupBy: []string{"d"}, Window: w,
		Select: []SelectItem{{"d", "d"}, {"sum", "sum(v)"}, {"n", "count(*)"}}}
}

func TestHoppingWindow(t *testing.T) {
	p := mustCompile(t, sumSpec(Window{Kind: Hopping, Size: 10 * s, Every: 5 * s}))
	got := run(p, []*Record{at(1*s, "d", "a", "v", 1), at(6*s, "d", "a", "v", 2), at(11*s, "d", "a", "v", 3)}, false)
	got = append(got, render(p.Tick(t0.Add(20*s), nil))...)
	diff(t, "hopping", got, []string{
		`{"rule":"w","ts":"2026-11-25T09:00:05Z","window":{"start":"2026-11-25T08:59:55Z","end":"2026-11-25T09:00:05Z"},"key":{"d":"a"},"values":{"d":"a","sum":1,"n":1}}`,
		`{"rule":"w","ts":"2026-11-25T09:00:10Z","window":{"start":"2026-11-25T09:00:00Z","end":"2026-11-25T09:00:10Z"},"key":{"d":"a"},"values":{"d":"a","sum":3,"n":2}}`,
		`{"rule":"w","ts":"2026-11-25T09:00:15Z","window":{"start":"2026-11-25T09:00:05Z","end":"2026-11-25T09:00:15Z"},"key":{"d":"a"},"values":{"d":"a","sum":5,"n":2}}`,
		`{"rule":"w","ts":"2026-11-25T09:00:20Z","window":{"start":"2026-11-25T09:00:10Z","end":"2026-11-25T09:00:20Z"},"key":{"d":"a"},"values":{"d":"a","sum":3,"n":1}}`,
	})
}

func TestSlidingWindow(t *testing.T) {
	p := mustCompile(t, sumSpec(Window{Kind: Sliding, Size: 10 * s}))
	got := run(p, []*Record{at(0, "d", "a", "v", 1), at(5*s, "d", "a", "v", 2), at(6*s, "d", "b", "v", 7), at(12*s, "d", "a", "v", 3)}, true)
	diff(t, "sliding", got, []string{
		`{"rule":"w","ts":"2026-11-25T09:00:00Z","window":{"start":"2026-11-25T08:59:50Z","end":"2026-11-25T09:00:00Z"},"key":{"d":"a"},"values":{"d":"a","sum":1,"n":1}}`,
		`{"rule":"w","ts":"2026-11-25T09:00:05Z","window":{"start":"2026-11-25T08:59:55Z","end":"2026-11-25T09:00:05Z"},"key":{"d":"a"},"values":{"d":"a","sum":3,"n":2}}`,
		`{"rule":"w","ts":"2026-11-25T09:00:06Z","window":{"start":"2026-11-25T08:59:56Z","end":"2026-11-25T09:00:06Z"},"key":{"d":"b"},"values":{"d":"b","sum":7,"n":1}}`,
		`{"rule":"w","ts":"2026-11-25T09:00:12Z","window":{"start":"2026-11-25T09:00:02Z","end":"2026-11-25T09:00:12Z"},"key":{"d":"a"},"values":{"d":"a","sum":5,"n":2}}`,
	})
	// Groups whose events all left the window are forgotten.
	p.Tick(t0.Add(30*s), nil)
	if w := p.wins.(*slidingWindows); len(w.groups) != 0 {
		t.Errorf("%d sliding groups left", len(w.groups))
	}
}

func TestSessionWindow(t *testing.T) {
	p := mustCompile(t, sumSpec(Window{Kind: Session, Gap: 5 * s}))
	got := run(p, []*Record{at(0, "d", "a", "v", 1), at(2*s, "d", "a", "v", 2), at(3*s, "d", "b", "v", 5), at(4*s, "d", "a", "v", 3), at(20*s, "d", "a", "v", 4)}, true)
	got = append(got, render(p.Tick(t0.Add(25*s), nil))...)
	diff(t, "session", got, []string{
		`{"rule":"w","ts":"2026-11-25T09:00:08Z","window":{"start":"2026-11-25T09:00:03Z","end":"2026-11-25T09:00:08Z"},"key":{"d":"b"},"values":{"d":"b","sum":5,"n":1}}`,
		`{"rule":"w","ts":"2026-11-25T09:00:09Z","window":{"start":"2026-11-25T09:00:00Z","end":"2026-11-25T09:00:09Z"},"key":{"d":"a"},"values":{"d":"a","sum":6,"n":3}}`,
		`{"rule":"w","ts":"2026-11-25T09:00:25Z","window":{"start":"2026-11-25T09:00:20Z","end":"2026-11-25T09:00:25Z"},"key":{"d":"a"},"values":{"d":"a","sum":4,"n":1}}`,
	})
}

func TestSessionJoinsOutOfOrder(t *testing.T) {
	sp := sumSpec(Window{Kind: Session, Gap: 5 * s})
	sp.EventTime = EventTime{Field: "ts", Lateness: 30 * s}
	p := mustCompile(t, sp)
	ms := func(d time.Duration) float64 { return float64(t0.Add(d).UnixMilli()) }
	var out []Output
	for _, r := range []*Record{rec("d", "a", "v", 1, "ts", ms(0)), rec("d", "a", "v", 2, "ts", ms(8*s)), rec("d", "a", "v", 4, "ts", ms(4*s))} {
		out = p.Process(r, out)
	}
	out = p.Flush(out)
	diff(t, "joined", render(out), []string{
		`{"rule":"w","ts":"2026-11-25T09:00:13Z","window":{"start":"2026-11-25T09:00:00Z","end":"2026-11-25T09:00:13Z"},"key":{"d":"a"},"values":{"d":"a","sum":7,"n":3}}`,
	})
}

func TestCountWindow(t *testing.T) {
	p := mustCompile(t, sumSpec(Window{Kind: Count, Count: 2}))
	got := run(p, []*Record{at(0, "d", "a", "v", 1), at(1*s, "d", "b", "v", 2), at(2*s, "d", "a", "v", 3), at(3*s, "d", "a", "v", 4)}, true)
	got = append(got, render(p.Flush(nil))...)
	diff(t, "count", got, []string{
		`{"rule":"w","ts":"2026-11-25T09:00:02Z","window":{"start":"2026-11-25T09:00:00Z","end":"2026-11-25T09:00:02Z"},"key":{"d":"a"},"values":{"d":"a","sum":4,"n":2}}`,
		`{"rule":"w","ts":"2026-11-25T09:00:03Z","window":{"start":"2026-11-25T09:00:03Z","end":"2026-11-25T09:00:03Z"},"key":{"d":"a"},"values":{"d":"a","sum":4,"n":1}}`,
		`{"rule":"w","ts":"2026-11-25T09:00:01Z","window":{"start":"2026-11-25T09:00:01Z","end":"2026-11-25T09:00:01Z"},"key":{"d":"b"},"values":{"d":"b","sum":2,"n":1}}`,
	})
}

func TestEventTimeLatenessAndWatermark(t *testing.T) {
	sp := sumSpec(Window{Kind: Tumbling, Size: 10 * s})
	sp.EventTime = EventTime{Field: "ts", Lateness: 5 * s, Idle: time.Minute}
	p := mustCompile(t, sp)
	sec := func(d time.Duration) float64 { return float64(t0.Add(d).Unix()) }
	var out []Output
	feed := func(v int, ts any) {
		r := rec("d", "a", "v", v, "ts", ts)
		r.Time = t0.Add(time.Hour) // arrival time: ignored
		out = p.Process(r, out)
	}
	feed(1, sec(1*s))
	feed(2, t0.Add(12*s).Format(time.RFC3339Nano)) // RFC 3339
	feed(4, float64(t0.Add(8*s).UnixMilli()))      // ms, out of order but within lateness: window 0 still open
	if len(out) != 0 {
		t.Fatalf("window closed before the watermark passed it: %v", render(out))
	}
	feed(8, sec(16*s)) // watermark 11s: closes [0s, 10s)
	feed(16, sec(9*s)) // older than the watermark: late
	if p.Stats.Late != 1 {
		t.Errorf("late %d", p.Stats.Late)
	}
	out = p.Tick(t0.Add(10*time.Minute), out) // idle: the watermark follows the clock
	diff(t, "event time", render(out), []string{
		`{"rule":"w","ts":"2026-11-25T09:00:10Z","window":{"start":"2026-11-25T09:00:00Z","end":"2026-11-25T09:00:10Z"},"key":{"d":"a"},"values":{"d":"a","sum":5,"n":2}}`,
		`{"rule":"w","ts":"2026-11-25T09:00:20Z","window":{"start":"2026-11-25T09:00:10Z","end":"2026-11-25T09:00:20Z"},"key":{"d":"a"},"values":{"d":"a","sum":10,"n":2}}`,
	})
	feed(32, "garbage") // counted, and placed at its arrival time
	if p.Stats.NoEventTime != 1 || p.Stats.Late != 1 {
		t.Errorf("no event time %d, late %d", p.Stats.NoEventTime, p.Stats.Late)
	}
}

func TestAggregates(t *testing.T) {
	p := mustCompile(t, Spec{Name: "a", Tumbling: time.Minute, Select: []SelectItem{
		{"first", "first(v)"}, {"last", "last(v)"}, {"sd", "stddev(v)"}, {"sdp", "stddev_pop(v)"}, {"var", "variance(v)"},
		{"med", "median(v)"}, {"p90", "quantile(v, 0.9)"}, {"distinct", "count_distinct(k)"}, {"delta", "delta(c)"},
		{"rate", "rate(c)"}, {"n", "count(v)"}, {"lastk", "last(k)"}, {"none", "avg(missing)"}, {"cnone", "count(missing)"}, {"qnone", "quantile(missing, 0.5)"}, {"dnone", "count_distinct(missing)"},
	}})
	vals := []float64{2, 4, 4, 4, 5, 5, 7, 9}
	counter := []float64{10, 15, 20, 3, 8, 8, 10, 12} // reset after 20
	var out []Output
	for i, v := range vals {
		r := at(time.Duration(i)*s, "v", v, "k", []string{"x", "y", "x", "z"}[i%4], "c", counter[i])
		out = p.Process(r, out)
	}
	out = p.Flush(out)
	// increase: 5 + 5 + 3 (reset: the new value) + 5 + 0 + 2 + 2 = 22 over 7 s.
	diff(t, "aggregates", render(out), []string{
		`{"rule":"a","ts":"2026-11-25T09:01:00Z","window":{"start":"2026-11-25T09:00:00Z","end":"2026-11-25T09:01:00Z"},"values":{"first":2,"last":9,"sd":2.138089935299395,"sdp":2,"var":4.571428571428571,"med":4.0148353330285715,"p90":7.02879302153473,"distinct":3,"delta":22,"rate":3.142857142857143,"n":8,"lastk":"z","none":null,"cnone":0,"qnone":null,"dnone":0}}`,
	})
}

func TestHavingWithAggregatesAndNames(t *testing.T) {
	p := mustCompile(t, Spec{Name: "h", GroupBy: []string{"d"}, Tumbling: time.Minute, Having: "n >= 2 AND max(v) < 10 AND d <> 'c'",
		Select: []SelectItem{{"d", "d"}, {"n", "count()"}}})
	var out []Output
	for i, d := range []string{"a", "a", "b", "b", "c", "c", "b"} {
		out = p.Process(at(time.Duration(i)*s, "d", d, "v", i+5), out)
	}
	out = p.Flush(out)
	diff(t, "having", render(out), []string{
		`{"rule":"h","ts":"2026-11-25T09:01:00Z","window":{"start":"2026-11-25T09:00:00Z","end":"2026-11-25T09:01:00Z"},"key":{"d":"a"},"values":{"d":"a","n":2}}`,
	})
}
