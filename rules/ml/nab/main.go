package nab

import (
	"flag"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/sluiceio/sluice/rules"
)

// Rule is the rule Run evaluates over each file, as an agent would run it:
// one record per point, anomaly_score learning online, nothing looked ahead.
var Rule = rules.Spec{Name: "nab", Select: []rules.SelectItem{{Name: "score", Expr: "anomaly_score(value)"}}}

// Run scores every file of the corpus with the rule's "score" value (a
// fresh plan per file) and returns the series to score.
func Run(files []File, spec rules.Spec) ([]Series, error) {
	out := make([]Series, 0, len(files))
	var outs []rules.Output
	for _, f := range files {
		p, err := rules.Compile(spec)
		if err != nil {
			return nil, err
		}
		s := Series{Name: f.Name, Category: f.Category, Windows: f.Windows, Scores: make([]float64, len(f.Values))}
		r := rules.Record{Fields: []rules.Field{{Name: "value"}}}
		for i, v := range f.Values {
			r.Fields[0].Value = rules.Number(v)
			r.Time = f.Times[i]
			outs = p.Process(&r, outs[:0])
			if len(outs) != 1 {
				return nil, fmt.Errorf("%s point %d: the rule emitted %d outputs, want 1", f.Name, i, len(outs))
			}
			for _, fv := range outs[0].Values {
				if fv.Name == "score" && fv.Kind == rules.KindNumber {
					s.Scores[i] = fv.Num
				}
			}
		}
		out = append(out, s)
	}
	return out, nil
}

// Main is `sluice nab --data DIR --windows FILE`: it runs anomaly_score over
// a NAB corpus point by point and prints the standard-profile score per
// category and overall, with the threshold chosen for the corpus.
func Main(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("nab", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "", "NAB data directory (category/file.csv)")
	windows := fs.String("windows", "", "NAB windows file (default DIR/windows.json)")
	verbose := fs.Bool("v", false, "print each file's raw score")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *data == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: sluice nab --data DIR [--windows FILE] [-v]")
		return 2
	}
	if *windows == "" {
		*windows = *data + "/windows.json"
	}
	files, err := Load(*data, *windows)
	if err != nil {
		fmt.Fprintln(stderr, "nab:", err)
		return 1
	}
	start := time.Now()
	corpus, err := Run(files, Rule)
	if err != nil {
		fmt.Fprintln(stderr, "nab:", err)
		return 1
	}
	elapsed := time.Since(start)
	r := Score(corpus, Standard)
	points := 0
	for _, f := range files {
		points += len(f.Values)
	}
	fmt.Fprintf(stdout, "NAB standard profile, %d files, %d points, %d windows; anomaly_score ran in %s\n",
		len(files), points, int(r.Perfect/Standard.TP), elapsed.Round(time.Millisecond))
	var cats []string
	for _, f := range r.Files {
		if !slices.Contains(cats, f.Category) {
			cats = append(cats, f.Category)
		}
	}
	for _, c := range cats {
		if s, raw, ok := r.Category(c); ok {
			fmt.Fprintf(stdout, "  %-24s %6.1f\n", c, s)
		} else {
			fmt.Fprintf(stdout, "  %-24s    n/a (no windows; false positives cost %.2f)\n", c, -raw)
		}
	}
	fmt.Fprintf(stdout, "score %.1f (null 0, perfect 100) at threshold %.4f\n", r.Score, r.Threshold)
	if *verbose {
		for _, f := range r.Files {
			fmt.Fprintf(stdout, "  %-58s raw %6.2f windows %d detected %d false positives %d\n",
				f.Name, f.Raw, f.Windows, f.Detected, f.FalsePositives)
		}
	}
	return 0
}
