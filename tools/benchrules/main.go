// Command benchrules measures the rule engine on pre-decoded records, on one
// goroutine, and prints BENCH lines for make bench:
//
//	BENCH rules_where_tumbling_avg_rps <n> records/s   one rule: where + tumbling avg by device, 1,000 devices
//	BENCH rules_100_rules_rps <n> records/s            100 mixed rules on one stream, a rules.Set in batches of 512 records
//	BENCH rules_100_rules_per_record_rps <n> records/s the same, each record through all rules before the next
//	BENCH rules_allocs_per_record <n> allocs           a stateless rule (where + computed select)
//
// rules_100_rules_rps drives the plans through a rules.Set, which finds
// each record's group key once for all the rules with the same group_by
// and runs the plans plan by plan over batches of up to 512 records, as
// the pipeline does when messages queue up (see Set and Plan.ProcessBatch).
// -mix, -devices and -batch vary the load for profiling (-cpuprofile).
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"time"

	"github.com/sluiceio/sluice/rules"
)

func main() {
	dur := flag.Duration("d", 2*time.Second, "how long each throughput measurement runs")
	profile := flag.String("cpuprofile", "", "write a CPU profile to this file")
	devices := flag.Int("devices", 1000, "distinct devices the records cycle over")
	mix := flag.String("mix", "0123456789", "kinds of rule (digits of hundredRules' switch) the 100 rules cycle over, to profile one kind")
	only := flag.String("only", "", "run only this measurement (where_tumbling, 100_rules, 100_rules_set, allocs)")
	batch := flag.Int("batch", 512, "records per Set.ProcessBatch call in rules_100_rules_rps")
	flag.Parse()
	if *profile != "" {
		f, err := os.Create(*profile)
		check(err)
		check(pprof.StartCPUProfile(f))
		defer pprof.StopCPUProfile()
	}
	runtime.GOMAXPROCS(1)
	rs := records(100_000, *devices)

	run := func(name string) bool { return *only == "" || *only == name }
	if run("where_tumbling") {
		one, err := rules.Compile(rules.Spec{Name: "avg", Where: "temperature > -40 AND temperature < 150", GroupBy: []string{"device"},
			Tumbling: time.Minute, Select: []rules.SelectItem{{Name: "avg_t", Expr: "avg(temperature)"}}})
		check(err)
		fmt.Printf("BENCH rules_where_tumbling_avg_rps %.0f records/s\n", throughput([]*rules.Plan{one}, rs, 0, *dur))
	}
	if run("100_rules") || run("100_rules_set") {
		fmt.Printf("BENCH rules_100_rules_rps %.0f records/s\n", throughput(hundredRules(*mix), rs, *batch, *dur))
	}
	if run("100_rules") {
		fmt.Printf("BENCH rules_100_rules_per_record_rps %.0f records/s\n", throughput(hundredRules(*mix), rs, 0, *dur))
	}
	if !run("allocs") {
		return
	}
	stateless, err := rules.Compile(rules.Spec{Name: "f", Where: "temperature > 20 AND device LIKE 'dev-%'",
		Select: []rules.SelectItem{{Name: "device", Expr: "device"}, {Name: "f", Expr: "round(temperature * 9 / 5 + 32, 1)"}}})
	check(err)
	fmt.Printf("BENCH rules_allocs_per_record %.3f allocs\n", allocs(stateless, rs))
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchrules:", err)
		os.Exit(1)
	}
}

// records makes n decoded records cycling over devices, 1 ms apart.
func records(n, devices int) []*rules.Record {
	names := make([]string, devices)
	for i := range names {
		names[i] = "dev-" + strconv.Itoa(i)
	}
	t := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	rs := make([]*rules.Record, n)
	for i := range rs {
		rs[i] = &rules.Record{Time: t.Add(time.Duration(i) * time.Millisecond), Topic: "sensors/" + names[i%devices] + "/t",
			Fields: []rules.Field{
				{Name: "device", Value: rules.String(names[i%devices])},
				{Name: "temperature", Value: rules.Number(float64(i%700)/10 - 10)},
				{Name: "humidity", Value: rules.Number(float64(i%100) / 2)},
				{Name: "counter", Value: rules.Number(float64(i / devices))},
				{Name: "status", Value: rules.String([]string{"ok", "ok", "warn"}[i%3])},
			}}
	}
	return rs
}

// hundredRules is a mix like a real gateway's: filters, windows of every
// kind, alerts and report-by-exception.
func hundredRules(mix string) []*rules.Plan {
	var ps []*rules.Plan
	for j := 0; len(ps) < 100; j++ {
		i := j/len(mix)*10 + int(mix[j%len(mix)]-'0')
		name := "r" + strconv.Itoa(i)
		th := strconv.Itoa(i % 50)
		var s rules.Spec
		switch i % 10 {
		case 0, 1, 2:
			s = rules.Spec{Where: "temperature > " + th, GroupBy: []string{"device"}, Tumbling: time.Minute,
				Select: []rules.SelectItem{{Name: "avg_t", Expr: "avg(temperature)"}, {Name: "max_t", Expr: "max(temperature)"}, {Name: "n", Expr: "count(*)"}}}
		case 3:
			s = rules.Spec{GroupBy: []string{"device"}, Window: rules.Window{Kind: rules.Hopping, Size: time.Minute, Every: 20 * time.Second},
				Select: []rules.SelectItem{{Name: "p95", Expr: "quantile(temperature, 0.95)"}}}
		case 4:
			s = rules.Spec{GroupBy: []string{"status"}, Tumbling: 10 * time.Second,
				Select: []rules.SelectItem{{Name: "devices", Expr: "count_distinct(device)"}, {Name: "sd", Expr: "stddev(humidity)"}}}
		case 5:
			s = rules.Spec{Where: "temperature > 55 + " + strconv.Itoa(i%5), Select: []rules.SelectItem{{Name: "device", Expr: "device"}, {Name: "f", Expr: "temperature * 1.8 + 32"}}}
		case 6:
			s = rules.Spec{GroupBy: []string{"device"}, Alert: &rules.Alert{When: "temperature > 50", For: 10 * time.Second, ClearWhen: "temperature < 40"},
				Select: []rules.SelectItem{{Name: "t", Expr: "temperature"}}}
		case 7:
			s = rules.Spec{GroupBy: []string{"device"}, Deadband: &rules.Deadband{Abs: 5}, Select: []rules.SelectItem{{Name: "h", Expr: "humidity"}}}
		case 8:
			s = rules.Spec{GroupBy: []string{"device"}, Window: rules.Window{Kind: rules.Session, Gap: 5 * time.Second},
				Select: []rules.SelectItem{{Name: "rate", Expr: "rate(counter)"}}}
		case 9:
			s = rules.Spec{Where: "status = 'warn' AND device LIKE 'dev-1%'", GroupBy: []string{"device"}, Window: rules.Window{Kind: rules.Count, Count: 10},
				Select: []rules.SelectItem{{Name: "last", Expr: "last(status)"}}}
		}
		s.Name = name
		p, err := rules.Compile(s)
		check(err)
		ps = append(ps, p)
	}
	return ps
}

// throughput feeds rs round after round (times moving on) to every plan for
// about d and returns records per second: with batch > 0 plan by plan over
// batches of that many records, else record by record.
func throughput(ps []*rules.Plan, rs []*rules.Record, batch int, d time.Duration) float64 {
	var out []rules.Output
	set := rules.NewSet(ps...)
	emitted := 0
	emit := func(_ int, outs []rules.Output) { emitted += len(outs) }
	span := rs[len(rs)-1].Time.Sub(rs[0].Time) + time.Millisecond
	base := make([]time.Time, len(rs))
	for i, r := range rs {
		base[i] = r.Time
	}
	n := 0
	start := time.Now()
	for round := 0; ; round++ {
		shift := time.Duration(round) * span
		for i, r := range rs {
			r.Time = base[i].Add(shift)
		}
		if batch > 0 {
			for b := 0; b < len(rs); b += batch {
				set.ProcessBatch(rs[b:min(b+batch, len(rs))], emit)
			}
		} else {
			for _, r := range rs {
				for _, p := range ps {
					out = p.Process(r, out[:0])
				}
			}
		}
		n += len(rs)
		if el := time.Since(start); el >= d {
			for i, r := range rs {
				r.Time = base[i]
			}
			return float64(n) / el.Seconds()
		}
	}
}

// allocs returns the heap allocations per record of p, after a warm-up.
func allocs(p *rules.Plan, rs []*rules.Record) float64 {
	var out []rules.Output
	for _, r := range rs {
		out = p.Process(r, out[:0])
	}
	var a, b runtime.MemStats
	runtime.ReadMemStats(&a)
	for _, r := range rs {
		out = p.Process(r, out[:0])
	}
	runtime.ReadMemStats(&b)
	return float64(b.Mallocs-a.Mallocs) / float64(len(rs))
}
