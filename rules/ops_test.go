package rules

import (
	"testing"
	"time"
)

func TestAlertForAndHysteresis(t *testing.T) {
	p := mustCompile(t, Spec{Name: "hot", GroupBy: []string{"d"},
		Alert:  &Alert{When: "t > 80", For: 10 * s, ClearWhen: "t < 70"},
		Select: []SelectItem{{"d", "d"}, {"t", "t"}}})
	got := run(p, []*Record{
		at(0, "d", "a", "t", 85),   // pending
		at(5*s, "d", "a", "t", 60), // broke: not continuous
		at(6*s, "d", "a", "t", 90), // pending again
		at(12*s, "d", "b", "t", 99),
		at(16*s, "d", "a", "t", 91), // held 10 s: raised
		at(17*s, "d", "a", "t", 75), // between: still raised
		at(18*s, "d", "a", "t", 95), // no second raise
		at(20*s, "d", "a", "t", 65), // cleared
	}, false)
	diff(t, "alert", got, []string{
		`{"rule":"hot","ts":"2026-11-25T09:00:16Z","event":"raised","key":{"d":"a"},"values":{"d":"a","t":91}}`,
		`{"rule":"hot","ts":"2026-11-25T09:00:20Z","event":"cleared","key":{"d":"a"},"values":{"d":"a","t":65}}`,
	})
}

func TestAlertOverWindow(t *testing.T) {
	p := mustCompile(t, Spec{Name: "avg_hot", GroupBy: []string{"d"}, Tumbling: 10 * s,
		Select: []SelectItem{{"avg_t", "avg(t)"}}, Alert: &Alert{When: "avg_t > 50 AND d = 'a'"}})
	got := run(p, []*Record{at(1*s, "d", "a", "t", 60), at(11*s, "d", "a", "t", 55), at(21*s, "d", "a", "t", 10), at(31*s, "d", "a", "t", 10)}, false)
	diff(t, "windowed alert", got, []string{
		`{"rule":"avg_hot","ts":"2026-11-25T09:00:10Z","event":"raised","window":{"start":"2026-11-25T09:00:00Z","end":"2026-11-25T09:00:10Z"},"key":{"d":"a"},"values":{"avg_t":60}}`,
		`{"rule":"avg_hot","ts":"2026-11-25T09:00:30Z","event":"cleared","window":{"start":"2026-11-25T09:00:20Z","end":"2026-11-25T09:00:30Z"},"key":{"d":"a"},"values":{"avg_t":10}}`,
	})
}

func TestDeadband(t *testing.T) {
	p := mustCompile(t, Spec{Name: "db", GroupBy: []string{"d"}, Select: []SelectItem{{"t", "t"}, {"s", "status"}},
		Deadband: &Deadband{Fields: []string{"t"}, Abs: 0.5, Heartbeat: time.Minute}})
	got := run(p, []*Record{
		at(0, "d", "a", "t", 20.0, "status", "ok"),
		at(1*s, "d", "a", "t", 20.4, "status", "x"), // within the band; status not watched
		at(2*s, "d", "a", "t", 20.6, "status", "x"), // 0.6 from 20
		at(3*s, "d", "b", "t", 20.6, "status", "x"), // another key
		at(4*s, "d", "a", "t", 20.2, "status", "x"),
		at(62*s, "d", "a", "t", 20.3, "status", "x"), // heartbeat
	}, false)
	diff(t, "deadband", got, []string{
		`{"rule":"db","ts":"2026-11-25T09:00:00Z","key":{"d":"a"},"values":{"t":20,"s":"ok"}}`,
		`{"rule":"db","ts":"2026-11-25T09:00:02Z","key":{"d":"a"},"values":{"t":20.6,"s":"x"}}`,
		`{"rule":"db","ts":"2026-11-25T09:00:03Z","key":{"d":"b"},"values":{"t":20.6,"s":"x"}}`,
		`{"rule":"db","ts":"2026-11-25T09:01:02Z","key":{"d":"a"},"values":{"t":20.3,"s":"x"}}`,
	})
	if p.Stats.Suppressed != 2 {
		t.Errorf("suppressed %d", p.Stats.Suppressed)
	}
	rel := mustCompile(t, Spec{Name: "rel", Deadband: &Deadband{Rel: 0.1}, Select: []SelectItem{{"t", "t"}}})
	got = run(rel, []*Record{at(0, "t", 100), at(s, "t", 109), at(2*s, "t", 111), at(3*s, "t", 100)}, false)
	diff(t, "relative", got, []string{
		`{"rule":"rel","ts":"2026-11-25T09:00:00Z","values":{"t":100}}`,
		`{"rule":"rel","ts":"2026-11-25T09:00:02Z","values":{"t":111}}`,
	})
}

func TestDedup(t *testing.T) {
	p := mustCompile(t, Spec{Name: "dd", Dedup: true, GroupBy: []string{"d"}, Select: []SelectItem{{"d", "d"}, {"s", "s"}}})
	got := run(p, []*Record{at(0, "d", "a", "s", "on"), at(s, "d", "a", "s", "on"), at(2*s, "d", "a", "s", "off"), at(3*s, "d", "a", "s", "on"), at(4*s, "d", "a", "s", "on")}, false)
	diff(t, "dedup", got, []string{
		`{"rule":"dd","ts":"2026-11-25T09:00:00Z","key":{"d":"a"},"values":{"d":"a","s":"on"}}`,
		`{"rule":"dd","ts":"2026-11-25T09:00:02Z","key":{"d":"a"},"values":{"d":"a","s":"off"}}`,
		`{"rule":"dd","ts":"2026-11-25T09:00:03Z","key":{"d":"a"},"values":{"d":"a","s":"on"}}`,
	})
}

func TestPatternAbsent(t *testing.T) {
	p := mustCompile(t, Spec{Name: "door", GroupBy: []string{"room"}, Select: []SelectItem{{"room", "room"}, {"door", "door"}},
		Pattern: []PatternStep{{When: "door = 'open'"}, {When: "motion = 1", Within: 5 * time.Minute, Absent: true}}})
	var out []Output
	for _, r := range []*Record{
		at(0, "room", "r1", "door", "open"),
		at(0, "room", "r2", "door", "open"),
		at(time.Minute, "room", "r2", "motion", 1), // r2: motion came, no match
		at(2*time.Minute, "room", "r3", "door", "open"),
	} {
		out = p.Process(r, out)
		out = p.Tick(r.Time, out)
	}
	out = p.Tick(t0.Add(5*time.Minute), out) // r1 deadline
	out = p.Tick(t0.Add(7*time.Minute), out) // r3 deadline
	diff(t, "absent", render(out), []string{
		`{"rule":"door","ts":"2026-11-25T09:05:00Z","event":"matched","key":{"room":"r1"},"values":{"room":"r1","door":"open"}}`,
		`{"rule":"door","ts":"2026-11-25T09:07:00Z","event":"matched","key":{"room":"r3"},"values":{"room":"r3","door":"open"}}`,
	})
}

func TestPatternSequence(t *testing.T) {
	p := mustCompile(t, Spec{Name: "seq", GroupBy: []string{"m"}, Select: []SelectItem{{"m", "m"}, {"e", "e"}},
		Pattern: []PatternStep{{When: "e = 'start'"}, {When: "e = 'fault'", Within: 10 * s}, {When: "e = 'stop'", Within: 10 * s}}})
	got := run(p, []*Record{
		at(0, "m", "a", "e", "start"),
		at(5*s, "m", "a", "e", "fault"),
		at(20*s, "m", "a", "e", "stop"), // too late: start over
		at(21*s, "m", "a", "e", "start"),
		at(22*s, "m", "a", "e", "noise"),
		at(25*s, "m", "a", "e", "fault"),
		at(30*s, "m", "a", "e", "stop"),
	}, true)
	diff(t, "sequence", got, []string{
		`{"rule":"seq","ts":"2026-11-25T09:00:30Z","event":"matched","key":{"m":"a"},"values":{"m":"a","e":"stop"}}`,
	})
}

func TestStatelessPassThroughAndDrop(t *testing.T) {
	p := mustCompile(t, Spec{Name: "x", Drop: []string{"secret"}, Select: []SelectItem{{"*", "*"}, {"f", "t * 2"}, {"dev", "upper(split_part(topic(), '/', 2))"}}})
	r := at(0, "t", 3, "secret", "s", "d", "a")
	r.Topic = "sensors/pump-7/temp"
	out := p.Process(r, nil)
	diff(t, "pass", render(out), []string{`{"rule":"x","ts":"2026-11-25T09:00:00Z","values":{"t":3,"d":"a","f":6,"dev":"PUMP-7"}}`})
	if p.Windowed() {
		t.Error("a stateless rule says it keeps state")
	}
}
