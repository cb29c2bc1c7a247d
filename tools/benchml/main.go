// Command benchml measures anomaly_score and prints BENCH lines for make
// bench:
//
//	BENCH nab_standard_score <v> points        NAB standard profile over the corpus (null 0, perfect 100)
//	BENCH anomaly_ns_per_point <v> ns          one detector update, one core
//	BENCH anomaly_rule_ns_per_point <v> ns     a rule selecting anomaly_score(value), per record
//	BENCH anomaly_bytes_per_key <v> bytes      the detector's memory per group key
//	BENCH anomaly_state_bytes_per_key <v> bytes what a checkpoint writes per changed key
//
// The corpus is testdata/nab, or the directory given with --data (for
// example ../shared/data/nab).
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"time"

	"github.com/sluiceio/sluice/rules"
	"github.com/sluiceio/sluice/rules/ml"
	"github.com/sluiceio/sluice/rules/ml/nab"
)

func main() {
	data := flag.String("data", "testdata/nab", "NAB data directory")
	windows := flag.String("windows", "", "NAB windows file (default DATA/windows.json)")
	flag.Parse()
	if *windows == "" {
		*windows = *data + "/windows.json"
	}
	runtime.GOMAXPROCS(1)
	files, err := nab.Load(*data, *windows)
	check(err)

	start := time.Now()
	corpus, err := nab.Run(files, nab.Rule)
	check(err)
	ruleTime := time.Since(start)
	r := nab.Score(corpus, nab.Standard)
	points := 0
	for _, f := range files {
		points += len(f.Values)
	}
	fmt.Printf("BENCH nab_standard_score %.1f points\n", r.Score)

	// The detector alone, best of three passes over the corpus.
	best := time.Duration(1 << 62)
	sink := 0.0
	for range 3 {
		start := time.Now()
		for _, f := range files {
			d := ml.NewAnomaly()
			for _, v := range f.Values {
				sink += d.Update(v)
			}
		}
		best = min(best, time.Since(start))
	}
	fmt.Printf("BENCH anomaly_ns_per_point %.0f ns\n", float64(best.Nanoseconds())/float64(points))
	fmt.Printf("BENCH anomaly_rule_ns_per_point %.0f ns\n", float64(ruleTime.Nanoseconds())/float64(points))
	p, err := rules.Compile(nab.Rule)
	check(err)
	d := ml.NewAnomaly()
	fmt.Printf("BENCH anomaly_bytes_per_key %d bytes\n", p.StateSize())
	fmt.Printf("BENCH anomaly_state_bytes_per_key %d bytes\n", len(d.AppendState(nil)))
	if sink < 0 {
		fmt.Println(sink)
	}
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchml:", err)
		os.Exit(1)
	}
}
