package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/sluiceio/sluice/internal/benchutil"
	"github.com/sluiceio/sluice/internal/testenv"
)

// Durations of W1's loads and how long the upstream count may lag behind
// the simulator's end (the 10 s window must close first).
const (
	cpuLoad       = 10 * time.Second
	cpuCountWait  = 30 * time.Second
	stepLoad      = 5 * time.Second
	stepCountWait = 15 * time.Second
	idleWait      = 5 * time.Second
	agentStopWait = 15 * time.Second
)

// w1Run is what one agent run under W1 measured. The CPU samples are taken
// when the agent subscribed (before), when the simulator exited (loaded)
// and when every message was counted upstream or the wait gave up (after).
type w1Run struct {
	load                  load
	sim                   simResult
	counted               uint64
	all                   bool // every sent message was counted in time
	before, loaded, after sample
	mallocs               uint64  // heap allocations of the agent from before to after
	written               float64 // bytes the agent wrote to storage from before to after
	hwmMiB                float64 // the agent's peak RSS
	totals                agentTotals
}

// passed reports whether the run counts as sustaining its rate.
func (r w1Run) passed() bool { return r.all && r.sim.reached(r.load) }

// agentRun runs W1 at l through a fresh mosquitto and a fresh agent, and
// waits up to countWait after the simulator's end for the upstream count.
// A short count is a result, not an error.
func (b *bench) agentRun(ctx context.Context, label string, l load, countWait time.Duration) (w1Run, error) {
	r := w1Run{load: l}
	rs, err := b.setUp(ctx, label+"-"+l.label(), w1Rule)
	if err != nil {
		return r, err
	}
	defer rs.close()
	return b.measure(ctx, r, rs.dir, rs.broker, rs.up, rs.agent, countWait)
}

// runSetup is what one agent run needs: its directory, a fresh mosquitto,
// a stream of its own upstream and the agent, subscribed.
type runSetup struct {
	dir    string
	broker *testenv.Mosquitto
	up     *upstream
	agent  *child
}

// setUp starts the parts of a run called name, whose agent runs rules.
func (b *bench) setUp(ctx context.Context, name, rules string) (*runSetup, error) {
	dir, err := b.runDir(name)
	if err != nil {
		return nil, err
	}
	rs := &runSetup{dir: dir}
	if rs.broker, err = testenv.StartMosquitto(dir); err != nil {
		return nil, err
	}
	gateway := "bench-" + name
	if rs.up, err = b.openUpstream(ctx, gateway); err != nil {
		rs.close()
		return nil, err
	}
	if rs.agent, err = b.startAgent(ctx, dir, gateway, rs.broker.URL, rules); err != nil {
		rs.close()
		return nil, err
	}
	return rs, nil
}

// close stops what setUp started, the agent first.
func (rs *runSetup) close() {
	if rs.agent != nil {
		rs.agent.stop(agentStopWait)
	}
	if rs.up != nil {
		rs.up.close()
	}
	rs.broker.Stop()
}

// measure runs the simulator against a subscribed agent, waits for the
// upstream count and stops the agent, sampling CPU and memory on the way.
func (b *bench) measure(ctx context.Context, r w1Run, dir string, broker *testenv.Mosquitto, up *upstream, agent *child, countWait time.Duration) (w1Run, error) {
	meter := b.meter(map[string]int{"agent": agent.pid(), "mosquitto": broker.Cmd.Process.Pid})
	var err error
	m0, err := mallocs(agent)
	if err != nil {
		return r, err
	}
	written0, err := benchutil.WrittenBytes(agent.pid())
	if err != nil {
		return r, err
	}
	if r.before, err = meter.sample(); err != nil {
		return r, err
	}
	if r.sim, err = b.runSim(ctx, dir, broker.URL, r.load); err != nil {
		return r, err
	}
	if r.sim.sent == 0 {
		return r, fmt.Errorf("firmware-sim sent nothing: %s", r.sim)
	}
	if r.loaded, err = meter.sample(); err != nil {
		return r, err
	}
	r.counted, err = up.waitCounted(ctx, r.sim.sent, countWait)
	if ctx.Err() != nil {
		return r, ctx.Err()
	}
	r.all = err == nil
	if r.after, err = meter.sample(); err != nil {
		return r, err
	}
	m1, err := mallocs(agent)
	if err != nil {
		return r, err
	}
	r.mallocs = m1 - m0
	written1, err := benchutil.WrittenBytes(agent.pid())
	if err != nil {
		return r, err
	}
	r.written = written1 - written0
	if r.hwmMiB, err = memMiB(agent.pid(), "VmHWM"); err != nil {
		return r, err
	}
	if err := agent.stop(agentStopWait); err != nil {
		b.log.Print(err)
	}
	r.totals = totals(agent)
	return r, nil
}

// describe writes what a run saw to stderr and reports whether the machine
// was quiet during the load (see checkQuiet).
func (b *bench) describe(name string, r w1Run) (quiet bool) {
	b.log.Printf("%s: firmware-sim %s", name, r.sim)
	b.log.Printf("%s: counted upstream %d of %d within %s of the simulator's end", name, r.counted, r.sim.sent,
		r.after.at.Sub(r.loaded.at).Round(10*time.Millisecond))
	b.log.Printf("%s: during the load (%.1fs) cores used: agent %.2f, mosquitto %.2f, firmware-sim %.2f",
		name, r.loaded.at.Sub(r.before.at).Seconds(), r.loaded.cores(r.before, "agent"),
		r.loaded.cores(r.before, "mosquitto"), r.sim.cpu.Seconds()/r.sim.wall.Seconds())
	quiet = b.checkQuiet(name, r.before, r.loaded, r.sim.cpu)
	b.log.Printf("%s: agent CPU %.2fs during the load + %.2fs after it (window close, commit, forward, idle until counted)",
		name, r.loaded.since(r.before, "agent").Seconds(), r.after.since(r.loaded, "agent").Seconds())
	if r.totals.ok {
		b.log.Printf("%s: agent received %d messages, %d commits (%.0f/s over the run), wrote %.0f KiB to storage",
			name, r.totals.received, r.totals.commits, float64(r.totals.commits)/r.after.at.Sub(r.before.at).Seconds(), r.written/1024)
	}
	return quiet
}

// meter returns a CPU meter of pids and of this process (nats-server and
// the upstream consumer run in it).
func (b *bench) meter(pids map[string]int) cpuMeter {
	pids["bench"] = os.Getpid()
	return cpuMeter{clk: b.clk, pids: pids}
}

// busyCores is how much CPU processes other than ours may use during a
// measurement before the harness warns that the figures are inflated.
const busyCores = 0.15

// checkQuiet warns when other processes (or the hypervisor) took CPU
// between s0 and s1, and reports whether they did not. untracked is the CPU
// time of our processes that s0 and s1 do not cover (the simulator).
func (b *bench) checkQuiet(name string, s0, s1 sample, untracked time.Duration) bool {
	others, stolen := s1.others(s0, untracked), s1.stolen(s0)
	b.log.Printf("%s: this process (nats-server, consumer) %.2f cores, other processes %.2f, stolen %.2f",
		name, s1.cores(s0, "bench"), others, stolen)
	if others > busyCores || stolen > busyCores {
		b.log.Printf("WARNING %s: the machine was not quiet (other processes %.2f cores, stolen %.2f): figures are inflated", name, others, stolen)
		return false
	}
	return true
}

// noisyRetries is how many agent/floor pairs of one W1 rate may be run
// again because the machine was not quiet during one of them. The
// hypervisor here steals up to 0.9 cores at times, which doubles a run's
// CPU per message (seen 12.6 and 25.2 µs/msg for the same binary minutes
// apart, with 0.05 and 0.89 cores stolen); a median of such runs says more
// about the neighbours than about the agent.
const noisyRetries = 6

// perMsg returns CPU time per message in µs.
func perMsg(d time.Duration, n uint64) float64 {
	if n == 0 {
		return 0
	}
	return d.Seconds() * 1e6 / float64(n)
}

// w1Pairs runs W1 at rate opts.repeat times, each time the agent and then
// the floor subscriber, so that both see the same minutes of a machine
// whose speed drifts, and reports the medians: the agent's CPU and
// allocations per message, the floor's CPU per message and, with broker,
// mosquitto's beside the agent. It returns the agent runs.
func (b *bench) w1Pairs(ctx context.Context, rate int, broker bool) ([]w1Run, error) {
	l := loadFor(rate, cpuLoad)
	var (
		runs                               []w1Run
		agentUs, allocs, brokerUs, floorUs []float64
		ratios                             []float64
	)
	retries := noisyRetries
	for i, attempt := 0, 1; i < b.opts.repeat; attempt++ {
		b.log.Printf("%s: agent under W1 at %d msg/s for %s (run %d of %d)", l.label(), rate, cpuLoad, i+1, b.opts.repeat)
		r, err := b.agentRun(ctx, fmt.Sprintf("cpu%d", attempt), l, cpuCountWait)
		if err != nil {
			return runs, err
		}
		quiet := b.describe(l.label(), r)
		if !r.all {
			b.log.Printf("WARNING %s: only %d of %d messages were counted upstream within %s; the figure divides by all %d sent",
				l.label(), r.counted, r.sim.sent, cpuCountWait, r.sim.sent)
		}
		f, err := b.floorRun(ctx, fmt.Sprintf("floor%d", attempt), l)
		if err != nil {
			return runs, err
		}
		if !(quiet && f.quiet) && retries > 0 {
			retries--
			b.log.Printf("%s run %d: discarded, the machine was not quiet (%d more retries)", l.label(), i+1, retries)
			continue
		}
		i++
		a, fl := perMsg(r.after.since(r.before, "agent"), r.sim.sent), perMsg(f.cpu, f.sim.sent)
		runs = append(runs, r)
		agentUs, floorUs = append(agentUs, a), append(floorUs, fl)
		allocs = append(allocs, float64(r.mallocs)/float64(r.sim.sent))
		brokerUs = append(brokerUs, perMsg(r.after.since(r.before, "mosquitto"), r.sim.sent))
		if fl > 0 {
			ratios = append(ratios, a/fl)
			b.log.Printf("%s run %d: agent %.1f, floor %.1f µs/msg: %.2f×", l.label(), i, a, fl, a/fl)
		}
	}
	b.report("e2e_w1_"+l.label()+"_cpu_us_per_msg", benchutil.Median(agentUs), 1, "us/msg")
	b.report("e2e_w1_"+l.label()+"_allocs_per_msg", benchutil.Median(allocs), 2, "allocs/msg")
	if broker {
		b.report("e2e_w1_"+l.label()+"_broker_cpu_us_per_msg", benchutil.Median(brokerUs), 1, "us/msg")
	}
	b.report("e2e_w1_"+l.label()+"_floor_cpu_us_per_msg", benchutil.Median(floorUs), 1, "us/msg")
	if len(ratios) > 0 {
		b.log.Printf("%s: agent / floor: median of the runs' ratios %.2f (runs: %.2f)", l.label(), benchutil.Median(ratios), ratios)
	}
	return runs, nil
}

// w1At5k reports the agent's, mosquitto's and the floor's CPU per message
// at 5k msg/s.
func (b *bench) w1At5k(ctx context.Context) error {
	_, err := b.w1Pairs(ctx, 5000, true)
	return err
}

// w1At20k reports the agent's and the floor's CPU per message and the
// agent's peak RSS (the highest of the runs) at 20k msg/s. passed says
// whether the agent kept up in every run.
func (b *bench) w1At20k(ctx context.Context) (passed bool, err error) {
	runs, err := b.w1Pairs(ctx, 20000, false)
	if err != nil {
		return false, err
	}
	passed = true
	hwm := 0.0
	var written []float64
	for _, r := range runs {
		passed = passed && r.passed()
		hwm = max(hwm, r.hwmMiB)
		// Per second of load: a run's 10 s hold ten checkpoints and one
		// window close, as every 10 s of a steady load do.
		written = append(written, r.written/r.sim.wall.Seconds()/1024)
	}
	b.report("e2e_w1_20k_peak_rss_mb", hwm, 1, "MiB")
	b.report("e2e_w1_20k_disk_write_kib_per_s", benchutil.Median(written), 0, "KiB/s")
	return passed, nil
}

// idle reports the RSS of an agent that subscribed and got nothing for 5 s.
func (b *bench) idle(ctx context.Context) error {
	dir, err := b.runDir("idle")
	if err != nil {
		return err
	}
	broker, err := testenv.StartMosquitto(dir)
	if err != nil {
		return err
	}
	defer broker.Stop()
	agent, err := b.startAgent(ctx, dir, "bench-idle", broker.URL, w1Rule)
	if err != nil {
		return err
	}
	defer agent.stop(agentStopWait)
	c0, err := b.clk.cpu(agent.pid())
	if err != nil {
		return err
	}
	select {
	case <-time.After(idleWait):
	case <-ctx.Done():
		return ctx.Err()
	}
	rss, err := memMiB(agent.pid(), "VmRSS")
	if err != nil {
		return err
	}
	c1, err := b.clk.cpu(agent.pid())
	if err != nil {
		return err
	}
	anon, err := memMiB(agent.pid(), "RssAnon")
	if err != nil {
		return err
	}
	b.report("idle_rss_mb", rss, 1, "MiB")
	// The file-backed part is the binary's own pages the idle agent maps
	// (it unmaps those start-up mapped once every input subscribed: see
	// package exepages); the anonymous part is what the agent holds.
	b.report("idle_rss_anon_mb", anon, 2, "MiB")
	b.log.Printf("idle: RSS %.1f MiB = %.1f file-backed (the binary's text and rodata) + %.2f anonymous", rss, rss-anon, anon)
	b.log.Printf("idle: agent CPU %s over %s", c1-c0, idleWait)
	return nil
}

// maxRate reports the highest W1 rate whose every message was counted
// upstream. Above a passed 20k run it steps up through --max-rates and
// stops at the first failure; below a failed one it steps down.
func (b *bench) maxRate(ctx context.Context, passed20k bool) error {
	const name = "e2e_w1_max_msgs_per_s"
	if !passed20k {
		b.log.Print("max rate: the 20k run did not pass; stepping down")
		for _, rate := range []int{15000, 10000, 5000} {
			ok, err := b.rateStep(ctx, rate)
			if err != nil {
				return err
			}
			if ok {
				b.report(name, float64(rate), 0, "msg/s")
				return nil
			}
		}
		b.report(name, 0, 0, "msg/s")
		return nil
	}
	last := 20000
	for _, rate := range b.opts.maxRates {
		if rate <= last {
			continue
		}
		ok, err := b.rateStep(ctx, rate)
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		last = rate
	}
	b.report(name, float64(last), 0, "msg/s")
	return nil
}

// rateStep runs 5 s of W1 at rate and says whether it passed, and if not,
// what the limit was.
func (b *bench) rateStep(ctx context.Context, rate int) (bool, error) {
	l := loadFor(rate, stepLoad)
	name := "max " + l.label()
	b.log.Printf("%s: agent under W1 at %d msg/s for %s", name, rate, stepLoad)
	r, err := b.agentRun(ctx, "max", l, stepCountWait)
	if err != nil {
		return false, err
	}
	b.describe(name, r)
	if r.passed() {
		b.log.Printf("%s: passed", name)
		return true, nil
	}
	b.log.Printf("%s: failed; limit: %s", name, limitOf(r))
	return false, nil
}

// limitOf names the process that most likely stopped a failed step, from
// what each used during the load. mosquitto is single-threaded: near one
// core, it is the limit.
func limitOf(r w1Run) string {
	broker := r.loaded.cores(r.before, "mosquitto")
	agent := r.loaded.cores(r.before, "agent")
	sim := r.sim.cpu.Seconds() / r.sim.wall.Seconds()
	others := r.loaded.others(r.before, r.sim.cpu) + r.loaded.stolen(r.before)
	usage := fmt.Sprintf("(cores: agent %.2f, mosquitto %.2f, firmware-sim %.2f, this process %.2f, others and stolen %.2f)",
		agent, broker, sim, r.loaded.cores(r.before, "bench"), others)
	switch {
	case others > busyCores:
		return "machine: other processes took CPU; run again on a quiet machine " + usage
	case broker >= 0.9:
		return "broker: mosquitto saturated its one core " + usage
	case !r.sim.reached(r.load) && sim >= 0.9:
		return fmt.Sprintf("simulator: it reached %.0f of %d msg/s %s", r.sim.rate, r.load.rate, usage)
	case !r.sim.reached(r.load):
		return fmt.Sprintf("machine: the simulator reached %.0f of %d msg/s with the cores shared %s", r.sim.rate, r.load.rate, usage)
	case r.totals.ok && r.totals.received < r.sim.sent:
		return fmt.Sprintf("agent: it received %d of %d messages (mosquitto still held the rest) %s", r.totals.received, r.sim.sent, usage)
	default:
		return fmt.Sprintf("agent: it received everything but %d of %d were counted upstream in time %s", r.counted, r.sim.sent, usage)
	}
}
