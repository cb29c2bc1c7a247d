package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/sluiceio/sluice/agent/config"
	"github.com/sluiceio/sluice/agent/ingest"
	"github.com/sluiceio/sluice/rules"
)

// testRule runs rules over records from a JSONL file and prints each output's
// JSON on its own line, for rule authors: `sluice test-rule --rule r.yaml
// --input records.jsonl`. Records get the arrival time of now; rules with
// event_time read their own field. Open windows are flushed at the end.
func testRule(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("test-rule", flag.ContinueOnError)
	fs.SetOutput(stderr)
	ruleFile := fs.String("rule", "", "YAML file with one rule (a mapping) or several (a list), as in a config's rules:")
	input := fs.String("input", "-", "JSON lines, one record each; - for stdin")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *ruleFile == "" {
		fmt.Fprintln(stderr, "test-rule: --rule is required")
		return 2
	}
	plans, err := loadTestRules(*ruleFile)
	if err != nil {
		fmt.Fprintf(stderr, "test-rule: %v\n", err)
		return 1
	}
	in := io.Reader(os.Stdin)
	if *input != "-" {
		f, err := os.Open(*input)
		if err != nil {
			fmt.Fprintf(stderr, "test-rule: %v\n", err)
			return 1
		}
		defer f.Close()
		in = f
	}
	w := bufio.NewWriter(stdout)
	defer w.Flush()
	var dec ingest.JSONDecoder
	var rec rules.Record
	var outs []rules.Output
	print := func() {
		for i := range outs {
			w.Write(outs[i].AppendJSON(nil, nil))
			w.WriteByte('\n')
		}
	}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	bad := 0
	for line := 1; sc.Scan(); line++ {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		rec.Reset()
		rec.Time = time.Now()
		payload := append([]byte(nil), sc.Bytes()...)
		if err := dec.Decode(payload, &rec); err != nil {
			fmt.Fprintf(stderr, "test-rule: %s:%d: %v\n", *input, line, err)
			bad++
			continue
		}
		for _, p := range plans {
			outs = p.Process(&rec, outs[:0])
			print()
		}
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintf(stderr, "test-rule: read %s: %v\n", *input, err)
		return 1
	}
	for _, p := range plans {
		outs = p.Flush(outs[:0])
		print()
	}
	if bad > 0 {
		return 1
	}
	return 0
}

func loadTestRules(path string) ([]*rules.Plan, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var list []config.Rule
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&list); err != nil {
		var one config.Rule
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err2 := dec.Decode(&one); err2 != nil {
			return nil, fmt.Errorf("%s: %w", path, err2)
		}
		list = []config.Rule{one}
	}
	var plans []*rules.Plan
	for _, r := range list {
		p, err := r.Compile()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		plans = append(plans, p)
	}
	return plans, nil
}
