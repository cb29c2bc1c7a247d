package rules

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// lateRecords feeds a tumbling 10s rule by event time (lateness 5s): window
// [0s, 10s) closes at the record of 16s, after which the record of 9s is
// late; the record of 12s is not (watermark 11s).
func lateRecords() []*Record {
	ts := func(d time.Duration) string { return t0.Add(d).Format(time.RFC3339) }
	var rs []*Record
	for _, r := range []struct {
		d  string
		v  int
		at time.Duration
	}{{"a", 1, 1 * s}, {"a", 2, 16 * s}, {"b", 4, 9 * s}, {"a", 8, 12 * s}} {
		rec := rec("d", r.d, "v", r.v, "ts", ts(r.at))
		rec.Time = t0.Add(time.Hour) // arrival time: ignored
		rs = append(rs, rec)
	}
	return rs
}

func TestLateRecordsEmitted(t *testing.T) {
	sp := sumSpec(Window{Kind: Tumbling, Size: 10 * s})
	sp.EventTime = EventTime{Field: "ts", Lateness: 5 * s, Late: LateEmit}
	p := mustCompile(t, sp)
	got := run(p, lateRecords(), false)
	got = append(got, render(p.Flush(nil))...)
	diff(t, "late: emit", got, []string{
		`{"rule":"w","ts":"2026-11-25T09:00:10Z","window":{"start":"2026-11-25T09:00:00Z","end":"2026-11-25T09:00:10Z"},"key":{"d":"a"},"values":{"d":"a","sum":1,"n":1}}`,
		`{"rule":"w","ts":"2026-11-25T09:00:09Z","event":"late","window":{"start":"2026-11-25T09:00:00Z","end":"2026-11-25T09:00:10Z"},"key":{"d":"b"},"values":{"d":"b","v":4,"ts":"2026-11-25T09:00:09Z"}}`,
		`{"rule":"w","ts":"2026-11-25T09:00:20Z","window":{"start":"2026-11-25T09:00:10Z","end":"2026-11-25T09:00:20Z"},"key":{"d":"a"},"values":{"d":"a","sum":10,"n":2}}`,
	})
	if p.Stats.Late != 1 || p.Stats.Emitted != 3 {
		t.Errorf("late %d, emitted %d; want 1 and 3", p.Stats.Late, p.Stats.Emitted)
	}

	// The default drops it, counted.
	sp.EventTime.Late = ""
	p = mustCompile(t, sp)
	got = run(p, lateRecords(), false)
	got = append(got, render(p.Flush(nil))...)
	if len(got) != 2 || p.Stats.Late != 1 || p.Stats.Emitted != 2 {
		t.Errorf("late: drop: %d outputs, late %d, emitted %d; want 2, 1, 2", len(got), p.Stats.Late, p.Stats.Emitted)
	}
}

func TestLateRecordsOfOtherRules(t *testing.T) {
	et := EventTime{Field: "ts", Lateness: 5 * s, Late: LateEmit}
	late := `{"rule":"w","ts":"2026-11-25T09:00:09Z","event":"late",%s"key":{"d":"b"},"values":{"d":"b","v":4,"ts":"2026-11-25T09:00:09Z"}}`
	cases := []struct {
		name string
		spec Spec
		want string // the late output
	}{
		// Hopping: the first window the time falls in, [0s, 10s) of those every 5s.
		{"hopping", Spec{Window: Window{Kind: Hopping, Size: 10 * s, Every: 5 * s}, Select: []SelectItem{{"n", "count(*)"}}},
			`"window":{"start":"2026-11-25T09:00:00Z","end":"2026-11-25T09:00:10Z"},`},
		// Session windows have no window a record was bound for.
		{"session", Spec{Window: Window{Kind: Session, Gap: 2 * s}, Select: []SelectItem{{"n", "count(*)"}}}, ``},
		// A rule without window: the record, unprojected, with its key.
		{"deadband", Spec{Select: []SelectItem{{"v", "v"}}, Deadband: &Deadband{Abs: 1}}, ``},
	}
	for _, c := range cases {
		c.spec.Name, c.spec.EventTime, c.spec.GroupBy = "w", et, []string{"d"}
		p := mustCompile(t, c.spec)
		var lates []Output
		for _, r := range lateRecords() {
			for _, o := range p.Process(r, nil) {
				if o.Event == EventLate {
					lates = append(lates, o.Clone())
				}
			}
		}
		diff(t, c.name, render(lates), []string{fmt.Sprintf(late, c.want)})
	}
}

func TestLateSpecErrors(t *testing.T) {
	for _, c := range []struct {
		et    EventTime
		field string
	}{
		{EventTime{Late: LateEmit}, "event_time.field"},
		{EventTime{Field: "ts", Late: "route"}, "event_time.late"},
	} {
		sp := sumSpec(Window{Kind: Tumbling, Size: 10 * s})
		sp.EventTime = c.et
		_, err := Compile(sp)
		var se *SpecError
		if !errors.As(err, &se) || se.Field != c.field || se.Rule != "w" {
			t.Errorf("%+v: %v, want an error in %s", c.et, err, c.field)
		}
	}
}

// TestLateSQL: EMIT LATE after TIMESTAMP BY is the structured late: emit.
func TestLateSQL(t *testing.T) {
	q, err := ParseSQL("w", "SELECT d, sum(v) AS sum, count(*) AS n FROM x TIMESTAMP BY ts LATENESS 5s EMIT LATE GROUP BY d, TUMBLING(10s)")
	if err != nil {
		t.Fatal(err)
	}
	if q.EventTime != (EventTime{Field: "ts", Lateness: 5 * s, Late: LateEmit}) {
		t.Errorf("event time %+v", q.EventTime)
	}
	sp := sumSpec(Window{Kind: Tumbling, Size: 10 * s})
	sp.EventTime = EventTime{Field: "ts", Lateness: 5 * s, Late: LateEmit}
	a, b := mustCompile(t, q), mustCompile(t, sp)
	got, want := run(a, lateRecords(), false), run(b, lateRecords(), false)
	if len(want) != 2 {
		t.Fatalf("%d outputs, want 2", len(want))
	}
	diff(t, "sql", got, want)
	if _, err := ParseSQL("w", "SELECT * FROM x TIMESTAMP BY ts EMIT"); err == nil {
		t.Error("EMIT without LATE parsed")
	}
}

// TestFingerprintsUnchangedByLate: adding EventTime.Late did not change
// the fingerprints of saved state (values computed before it existed), and
// late: emit restores the state of late: drop.
func TestFingerprintsUnchangedByLate(t *testing.T) {
	a := Spec{Name: "x", GroupBy: []string{"d"}, Tumbling: time.Minute, EventTime: EventTime{Field: "ts", Lateness: 10 * time.Second},
		Select: []SelectItem{{"a", "avg(v)"}}}
	b := Spec{Name: "y", Select: []SelectItem{{"v", "v"}}, Deadband: &Deadband{Abs: 1}}
	if fp := a.Fingerprint(); fp != 0x76e887049425b683 {
		t.Errorf("fingerprint %#x, was 0x76e887049425b683", fp)
	}
	if fp := b.Fingerprint(); fp != 0xf5b49aa35b279407 {
		t.Errorf("fingerprint %#x, was 0xf5b49aa35b279407", fp)
	}
	a.EventTime.Late = LateEmit
	if fp := a.Fingerprint(); fp != 0x76e887049425b683 {
		t.Errorf("late: emit changed the fingerprint to %#x", fp)
	}
}
