package main

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/sluiceio/sluice/agent/config"
)

// TestApplySwapsConfigWithoutLoss runs the agent in-process, swaps in a
// config that keeps one rule, adds another and drops a third while messages
// flow, and checks that the kept rule counted every message exactly once
// across the swap and the added rule counted what came after it.
func TestApplySwapsConfigWithoutLoss(t *testing.T) {
	r := newRig(t)
	base, err := os.ReadFile(r.config)
	if err != nil {
		t.Fatal(err)
	}
	extra := func(name string) string {
		return fmt.Sprintf(`  - name: %s
    from: telemetry
    group_by: [device]
    window: {tumbling: 1s}
    select: {n: count(*)}
`, name)
	}
	withRules := func(names ...string) *config.Config {
		doc := string(base)
		var add strings.Builder
		for _, n := range names {
			add.WriteString(extra(n))
		}
		doc = strings.Replace(doc, "uplinks:", add.String()+"uplinks:", 1)
		c, err := config.Parse([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	logf, _ := os.Create(filepath.Join(r.dir, "agent.log"))
	defer logf.Close()
	log := slog.New(slog.NewTextHandler(logf, nil))
	a := &agent{log: log}
	if err := a.start(withRules("dropped")); err != nil {
		t.Fatal(err)
	}
	defer a.stop()
	<-a.current().ready

	f1 := publish(t, r.broker.URL, 10, 1000, 0, nil)
	src, fwd, gen := a.current().sources[0], a.current().fwds[0], a.current()
	if err := a.Apply(withRules("added")); err != nil {
		t.Fatal(err)
	}
	// Only rules changed: the input and the uplink kept running as they were.
	if a.current() != gen || a.current().sources[0] != src || a.current().fwds[0] != fwd {
		t.Error("the swap restarted an unchanged input or uplink")
	}
	if n := src.Connects.Load(); n != 1 {
		t.Errorf("the unchanged input connected %d times, want 1", n)
	}
	<-a.current().ready
	f2 := publish(t, r.broker.URL, 10, 1000, 0, nil)
	if err := a.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Every message is counted by temp_1s, and by exactly one of "dropped"
	// (handled before the swap) and "added" (after it).
	_, waitErr := r.collector.WaitSum("n", 2000+2000, 30*time.Second)
	envs, _, _ := r.collector.Snapshot()
	perRule := map[string]float64{}
	seqs := map[uint64]bool{}
	for _, e := range envs {
		perRule[e.Rule] += e.Values["n"]
		seqs[e.Seq] = true
	}
	if waitErr != nil {
		t.Fatalf("%v: per rule %v, %d envelopes, %d distinct seqs", waitErr, perRule, len(envs), len(seqs))
	}
	if perRule["temp_1s"] != 2000 || perRule["dropped"]+perRule["added"] != 2000 || perRule["added"] < 1000 {
		t.Errorf("counts per rule %v, want temp_1s 2000 and dropped + added 2000", perRule)
	}
	for dev, n := range f2.count {
		if got := f1.count[dev] + n; got != 200 {
			t.Fatalf("%s: published %d", dev, got)
		}
	}
}

// TestApplyChangedInputAndUplink swaps in a config whose input subscribes to
// one more topic and whose uplink has another batch size: both are replaced,
// the rule keeps its windows, and every message is counted once.
func TestApplyChangedInputAndUplink(t *testing.T) {
	r := newRig(t)
	base, _ := os.ReadFile(r.config)
	c1, err := config.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	doc2 := strings.Replace(string(base), "topics: [sensors/+/telemetry]", "topics: [sensors/+/telemetry, other/#]", 1)
	doc2 = strings.Replace(doc2, "subject: telemetry.{gateway}.{rule}", "subject: telemetry.{gateway}.{rule}\n      batch_size: 50", 1)
	c2, err := config.Parse([]byte(doc2))
	if err != nil {
		t.Fatal(err)
	}
	logf, _ := os.Create(filepath.Join(r.dir, "agent.log"))
	defer logf.Close()
	a := &agent{log: slog.New(slog.NewTextHandler(logf, nil))}
	if err := a.start(c1); err != nil {
		t.Fatal(err)
	}
	defer a.stop()
	<-a.current().ready
	src, fwd := a.current().sources[0], a.current().fwds[0]
	f1 := publish(t, r.broker.URL, 10, 1000, 0, nil)
	if err := a.Apply(c2); err != nil {
		t.Fatal(err)
	}
	g := a.current()
	if g.sources[0] != nil || g.fwds[0] == fwd || len(g.fwds) != 1 {
		t.Errorf("changed input or uplink not replaced")
	}
	if src.Connected() {
		t.Error("the replaced input is still connected")
	}
	f2 := publish(t, r.broker.URL, 10, 1000, 0, nil)
	if got, err := r.collector.WaitSum("n", 2000, 30*time.Second); err != nil {
		t.Fatalf("%v (got %v)", err, got)
	}
	for dev, n := range f2.count {
		f1.count[dev] += n
		f1.sum[dev] += f2.sum[dev]
		f1.max[dev] = max(f1.max[dev], f2.max[dev])
	}
	time.Sleep(1500 * time.Millisecond) // a double count would show within a window
	r.check(f1, 2000)
}

// TestApplyRejectedConfigRestoresLimits: a config that fails to start (its
// data_dir is a file) takes its limits with it; the previous config runs
// again under its own.
func TestApplyRejectedConfigRestoresLimits(t *testing.T) {
	t.Setenv("GOMAXPROCS", "")
	t.Setenv("GOMEMLIMIT", "")
	defer debug.SetMemoryLimit(math.MaxInt64)
	defer runtime.SetDefaultGOMAXPROCS()
	r := newRig(t)
	base, err := os.ReadFile(r.config)
	if err != nil {
		t.Fatal(err)
	}
	parse := func(doc string) *config.Config {
		c, err := config.Parse([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c1 := parse(string(base) + "limits: {procs: 1, memory: 64MiB}\n")
	notDir := filepath.Join(r.dir, "not-a-dir")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	doc2 := regexp.MustCompile(`(?m)^data_dir: .*$`).ReplaceAllString(string(base), "data_dir: "+notDir)
	c2 := parse(doc2 + "limits: {procs: 3, memory: 32MiB}\n")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := slog.New(slog.DiscardHandler)
	a := &agent{log: log, limits: &limiter{ctx: ctx, log: log}}
	a.limits.apply(c1.Limits)
	if err := a.start(c1); err != nil {
		t.Fatal(err)
	}
	defer a.stop()
	<-a.current().ready

	err = a.Apply(c2)
	if err == nil || !strings.Contains(err.Error(), "previous config runs again") {
		t.Fatalf("Apply of a config whose data_dir is a file: %v; want the previous config running again", err)
	}
	if got := runtime.GOMAXPROCS(0); got != 1 {
		t.Errorf("GOMAXPROCS %d after the rejected config; want the running config's 1", got)
	}
	if got := debug.SetMemoryLimit(-1); got != 64<<20 {
		t.Errorf("memory limit %d after the rejected config; want the running config's %d", got, 64<<20)
	}
	// What the limiter records is c1's, so c1 applied again is a no-op.
	if *a.limits.cur != c1.Limits {
		t.Errorf("limiter holds %+v, want %+v", *a.limits.cur, c1.Limits)
	}
}
