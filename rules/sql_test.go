package rules

import (
	"errors"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestSQLCompilesToTheStructuredSpec(t *testing.T) {
	cases := []struct {
		sql  string
		want Spec
	}{
		{`SELECT device, avg(temperature) AS avg_t, count(*) AS n
		  FROM telemetry WHERE temperature BETWEEN -40 AND 150
		  GROUP BY device, TUMBLING(1m)`,
			Spec{Name: "r", From: "telemetry", Where: "temperature BETWEEN -40 AND 150", GroupBy: []string{"device"},
				Window: Window{Kind: Tumbling, Size: time.Minute},
				Select: []SelectItem{{"device", "device"}, {"avg_t", "avg(temperature)"}, {"n", "count(*)"}}}},
		{`select max(t), quantile(t, 0.95) as p95 from x timestamp by ts lateness 10s group by site, d, hopping(5m, 1m30s) having count(*) > 2;`,
			Spec{Name: "r", From: "x", GroupBy: []string{"site", "d"}, Window: Window{Kind: Hopping, Size: 5 * time.Minute, Every: 90 * time.Second},
				EventTime: EventTime{Field: "ts", Lateness: 10 * time.Second}, Having: "count(*) > 2",
				Select: []SelectItem{{"max_t", "max(t)"}, {"p95", "quantile(t, 0.95)"}}}},
		{"SELECT count(*) FROM x GROUP BY SESSION('2m')", Spec{Name: "r", From: "x", Window: Window{Kind: Session, Gap: 2 * time.Minute}, Select: []SelectItem{{"count", "count(*)"}}}},
		{"SELECT sum(v) AS s FROM x GROUP BY k, COUNT_WINDOW(10) -- every ten", Spec{Name: "r", From: "x", GroupBy: []string{"k"}, Window: Window{Kind: Count, Count: 10}, Select: []SelectItem{{"s", "sum(v)"}}}},
		{"SELECT avg(v) AS a FROM x GROUP BY SLIDING(30s)", Spec{Name: "r", From: "x", Window: Window{Kind: Sliding, Size: 30 * time.Second}, Select: []SelectItem{{"a", "avg(v)"}}}},
		{"SELECT *, t * 9 / 5 + 32 AS f FROM x WHERE t > 30", Spec{Name: "r", From: "x", Where: "t > 30", Select: []SelectItem{{"*", "*"}, {"f", "t * 9 / 5 + 32"}}}},
		{"SELECT * FROM x", Spec{Name: "r", From: "x", Select: []SelectItem{{"*", "*"}}}},
	}
	for _, c := range cases {
		got, err := ParseSQL("r", c.sql)
		if err != nil {
			t.Errorf("%s: %v", c.sql, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", c.sql, got, c.want)
		}
	}
}

func TestSQLErrorsNameRuleAndPosition(t *testing.T) {
	cases := []struct{ sql, want string }{
		{"SELECT avg(t) AS a\nFROM x\nGROUP BY d, TUMBLING(1m)\nHAVING foo(1) > 2", "rule r: sql: 4:8: unknown function foo()"},
		{"SELECT t AS a FROM x GROUP BY TUMBLING(1m)", `rule r: sql: 1:8: field "t" must be in group_by or inside an aggregate`},
		{"SELECT a FROM x\n  WHERE a >", "rule r: sql: 2:12: unexpected end of expression"},
		{"SELECT a FROM x WHERE a > 1 AND\n  b LIKE 3", "rule r: sql: 2:10: LIKE needs a string pattern"},
		{"SELECT a", "rule r: sql: 1:9: expected , or FROM after a select item"},
		{"SELECT a + 1 FROM x", "rule r: sql: 1:8: name this item with AS"},
		{"SELECT count(*) FROM x GROUP BY TUMBLING(1)", `rule r: sql: 1:42: bad duration "1": use a unit, like 1m, 30s or 500ms`},
		{"SELECT count(*) FROM x GROUP BY TUMBLING(-1m)", "rule r: sql: 1:42: expected a duration like 1m or 30s"},
		{"SELECT count(*) FROM x GROUP BY WEEKLY(1)", "rule r: sql: 1:33: GROUP BY takes fields and one of TUMBLING, HOPPING, SLIDING, SESSION, COUNT_WINDOW; not WEEKLY()"},
		{"SELECT a FROM x GROUP BY a", "rule r: sql: 1:17: group_by: needs a window (or an alert, pattern, deadband or a learning function)"},
		{"SELECT count(*) FROM x GROUP BY HOPPING(1h, 1s)", "rule r: sql: 1:33: window.every: 1s makes more than 1000 windows of 1h0m0s overlap"},
		{"SELECT a FROM x extra", `rule r: sql: 1:17: unexpected "extra"`},
		{"SELECT quantile(v, 2) AS q FROM x GROUP BY TUMBLING(1s)", "rule r: sql: 1:20: quantile(): q must be between 0 and 1"},
	}
	for _, c := range cases {
		_, err := ParseSQL("r", c.sql)
		if err == nil || err.Error() != c.want {
			t.Errorf("%q:\n got %v\nwant %s", c.sql, err, c.want)
			continue
		}
		var se *SpecError
		var pe *PosError
		if !errors.As(err, &se) || se.Rule != "r" || !errors.As(err, &pe) {
			t.Errorf("%q: %T is not a SpecError with a PosError", c.sql, err)
		}
	}
}

// TestFrontEndsAgree runs the same rules written both ways over the same
// records and compares every output.
func TestFrontEndsAgree(t *testing.T) {
	pairs := []struct {
		sql  string
		spec Spec
	}{
		{"SELECT device, avg(temperature) AS avg_t, max(temperature) AS max_t, quantile(temperature, 0.95) AS p95, count(*) AS n FROM telemetry WHERE temperature > -40 AND temperature < 150 GROUP BY device, TUMBLING(10s) HAVING n > 1",
			Spec{Name: "r", Where: "temperature > -40 && temperature < 150", GroupBy: []string{"device"}, Window: Window{Kind: Tumbling, Size: 10 * time.Second}, Having: "n > 1",
				Select: []SelectItem{{"device", "device"}, {"avg_t", "avg(temperature)"}, {"max_t", "max(temperature)"}, {"p95", "quantile(temperature, 0.95)"}, {"n", "count()"}}}},
		{"SELECT device, stddev(temperature) AS sd, first(temperature) AS f, last(temperature) AS l FROM t GROUP BY device, HOPPING(20s, 5s)",
			Spec{Name: "r", GroupBy: []string{"device"}, Window: Window{Kind: Hopping, Size: 20 * time.Second, Every: 5 * time.Second},
				Select: []SelectItem{{"device", "device"}, {"sd", "stddev(temperature)"}, {"f", "first(temperature)"}, {"l", "last(temperature)"}}}},
		{"SELECT count_distinct(device) AS devices, sum(temperature) AS s FROM t GROUP BY SESSION(900ms)",
			Spec{Name: "r", Window: Window{Kind: Session, Gap: 900 * time.Millisecond}, Select: []SelectItem{{"devices", "count_distinct(device)"}, {"s", "sum(temperature)"}}}},
		{"SELECT device, upper(device) AS u, round(temperature * 1.8 + 32, 1) AS f FROM t WHERE device IN ('a', 'b')",
			Spec{Name: "r", Where: "device IN ('a', 'b')", Select: []SelectItem{{"device", "device"}, {"u", "upper(device)"}, {"f", "round(temperature * 1.8 + 32, 1)"}}}},
	}
	rs := randomRecords(rand.New(rand.NewPCG(1, 2)), 2000)
	for _, c := range pairs {
		q, err := ParseSQL("r", c.sql)
		if err != nil {
			t.Fatal(err)
		}
		a, b := mustCompile(t, q), mustCompile(t, c.spec)
		got, want := run(a, rs, true), run(b, rs, true)
		got = append(got, render(a.Flush(nil))...)
		want = append(want, render(b.Flush(nil))...)
		if len(want) < 10 {
			t.Errorf("%s: only %d outputs", c.sql, len(want))
		}
		diff(t, c.sql, got, want)
	}
}

// randomRecords makes n records of devices a to e over about n/2 seconds.
func randomRecords(rng *rand.Rand, n int) []*Record {
	rs := make([]*Record, n)
	at := t0
	for i := range rs {
		at = at.Add(time.Duration(rng.IntN(1000)) * time.Millisecond)
		r := rec("device", string(rune('a'+rng.IntN(5))), "temperature", float64(rng.IntN(2000))/10-20)
		r.Time = at
		rs[i] = r
	}
	return rs
}

func FuzzParseSQL(f *testing.F) {
	for _, s := range []string{
		"SELECT device, avg(t) AS a FROM x WHERE t > 1 GROUP BY device, TUMBLING(1m) HAVING a > 2",
		"select * from x timestamp by ts lateness 5s",
		"select * from x timestamp by ts lateness 5s emit late",
		"SELECT count(*) FROM x GROUP BY HOPPING(1m, 10s)",
		"SELECT CASE WHEN a > 1 THEN 'x' ELSE 'y' END AS c FROM x",
		"SELECT quantile(v, 0.5) AS q FROM x GROUP BY k, SESSION('1m')",
	} {
		f.Add(s)
	}
	r := rec("a", 1.5, "t", 2.0, "device", "d", "v", 3.0, "k", "z")
	r.Time = t0
	f.Fuzz(func(t *testing.T, src string) {
		s, err := ParseSQL("f", src)
		if err != nil {
			var se *SpecError
			if !errors.As(err, &se) || !strings.HasPrefix(err.Error(), "rule f: sql: ") {
				t.Fatalf("%q: error %v is not a SpecError of the query", src, err)
			}
			return
		}
		p, err := Compile(s)
		if err != nil {
			t.Fatalf("%q parsed but does not compile: %v", src, err)
		}
		p.Process(r, nil)
		p.Flush(nil)
	})
}
