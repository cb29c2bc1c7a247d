package config

import (
	"strings"
	"testing"
	"time"

	"github.com/sluiceio/sluice/rules"
)

func TestRuleForms(t *testing.T) {
	y := strings.Replace(good, `  - name: temp
    from: telemetry`, `  - name: q
    sql: |
      SELECT device, avg(temperature) AS avg_t
      FROM telemetry GROUP BY device, HOPPING(1m, 20s)
    alert: {when: avg_t > 80, for: 1m, clear_when: avg_t < 70}
  - name: s
    from: telemetry
    group_by: [device]
    window: {session: 2m}
    event_time: {field: ts, lateness: 10s}
    select: {n: count(*)}
  - name: c
    from: telemetry
    window: {count: {n: 5}}
    select: {n: count(*)}
  - name: band
    from: telemetry
    group_by: [device]
    select: {t: temperature}
    deadband: {abs: 0.5, heartbeat: 10m}
  - name: door
    from: telemetry
    group_by: [room]
    pattern:
      - {when: "door = 'open'"}
      - {when: motion = 1, within: 5m, absent: true}
  - name: temp
    from: telemetry`, 1)
	c, err := Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	q := c.Rules[0]
	if q.From != "telemetry" || !q.HighPriority() {
		t.Errorf("sql rule: from %q, high %v", q.From, q.HighPriority())
	}
	s := q.Spec()
	if s.Window != (rules.Window{Kind: rules.Hopping, Size: time.Minute, Every: 20 * time.Second}) || s.Alert.For != time.Minute {
		t.Errorf("sql spec %+v", s)
	}
	if w := c.Rules[1].Spec(); w.Window.Gap != 2*time.Minute || w.EventTime.Lateness != 10*time.Second {
		t.Errorf("session spec %+v", w)
	}
	if w := c.Rules[2].Spec(); w.Window.Count != 5 {
		t.Errorf("count spec %+v", w)
	}

	bad := strings.Replace(good, `  - name: temp
    from: telemetry`, `  - name: q
    sql: "SELECT avg(t) AS a\n  FROM telemetry GROUP BY TUMBLING(1m) HAVING nope(1)"
  - name: temp
    from: telemetry`, 1)
	_, err = Parse([]byte(bad))
	if err == nil || !strings.Contains(err.Error(), "rules[0].sql: 2:47: unknown function nope()") {
		t.Errorf("sql error: %v", err)
	}
}

func TestEventTimeLate(t *testing.T) {
	doc := strings.Replace(good, "window: {tumbling: 1m}", "window: {tumbling: 1m}\n    event_time: {field: ts, lateness: 5s, late: emit}", 1)
	c, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Rules[0].Spec().EventTime.Late; got != "emit" {
		t.Errorf("late = %q, want emit", got)
	}
	_, err = Parse([]byte(strings.Replace(doc, "late: emit", "late: keep", 1)))
	if err == nil || !strings.Contains(err.Error(), "rules[0].event_time") {
		t.Errorf("late: keep: %v, want an error at rules[0].event_time", err)
	}
}
