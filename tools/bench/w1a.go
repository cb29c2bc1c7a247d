package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/sluiceio/sluice/internal/benchutil"
)

// w1aSettle is how long the upstream count must stay still after the
// simulator's end before W1a counts every passing record as arrived: the
// rule is a filter, so how many records pass is not known in advance.
const w1aSettle = 3 * time.Second

// w1aAt5k runs W1a: W1's load at 5k msg/s through a stateless rule that
// passes the records above 30 °C upstream. Its figure is the p99 of the
// time from a record's ts (set by firmware-sim just before it publishes) to
// its arrival at the upstream consumer: the cost in latency of read
// coalescing, group commit and the forwarder, beside W1's cost in CPU.
// A run during which the machine was not quiet is run again, up to
// noisyRetries times: a stolen core shows in the tail of the latencies.
func (b *bench) w1aAt5k(ctx context.Context) error {
	for attempt := 1; ; attempt++ {
		last := attempt > noisyRetries
		quiet, err := b.w1aRun(ctx, attempt, last)
		if err != nil || quiet || last {
			return err
		}
		b.log.Printf("w1a: discarded, the machine was not quiet (%d more retries)", noisyRetries-attempt)
	}
}

// w1aRun is one run of W1a; it reports its figures when the machine was
// quiet or when last is set, and whether the machine was quiet. Each
// attempt has its own gateway name, directory and subject.
func (b *bench) w1aRun(ctx context.Context, attempt int, last bool) (quiet bool, err error) {
	l := loadFor(5000, cpuLoad)
	name := "w1a-" + l.label()
	if attempt > 1 {
		name = fmt.Sprintf("%s-%d", name, attempt)
	}
	b.log.Printf("%s: agent under W1a (where temperature > 30, records upstream) at %d msg/s for %s", name, l.rate, cpuLoad)
	rs, err := b.setUp(ctx, name, w1aRule)
	if err != nil {
		return false, err
	}
	defer rs.close()
	agent, broker, up, dir := rs.agent, rs.broker, rs.up, rs.dir
	meter := b.meter(map[string]int{"agent": agent.pid(), "mosquitto": broker.Cmd.Process.Pid})
	before, err := meter.sample()
	if err != nil {
		return false, err
	}
	written0, err := benchutil.WrittenBytes(agent.pid())
	if err != nil {
		return false, err
	}
	sim, err := b.runSim(ctx, dir, broker.URL, l)
	if err != nil {
		return false, err
	}
	if err := up.settle(ctx, w1aSettle, cpuCountWait); err != nil {
		return false, err
	}
	after, err := meter.sample()
	if err != nil {
		return false, err
	}
	written1, err := benchutil.WrittenBytes(agent.pid())
	if err != nil {
		return false, err
	}
	b.log.Printf("%s: firmware-sim %s", name, sim)
	written := (written1 - written0) / 1024 / sim.wall.Seconds()
	b.log.Printf("%s: the agent wrote %.0f KiB to storage, %.0f KiB per second of load", name, (written1-written0)/1024, written)
	quiet = b.checkQuiet(name, before, after, sim.cpu)

	envs, arrived := up.col.Arrivals()
	lat := make([]float64, 0, len(envs))
	for i, e := range envs {
		ts, ok := e.Values["ts"]
		if !ok {
			return false, fmt.Errorf("%s: output seq %d has no ts", name, e.Seq)
		}
		lat = append(lat, float64(arrived[i].UnixMicro())/1e3-ts)
	}
	if len(lat) == 0 {
		return false, fmt.Errorf("%s: no record above 30 °C reached upstream (of %d sent)", name, sim.sent)
	}
	slices.Sort(lat)
	q := func(p float64) float64 { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	b.log.Printf("%s: %d of %d records passed; latency ts → upstream: p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, max %.1f ms (ts has ms resolution)",
		name, len(lat), sim.sent, q(0.5), q(0.9), q(0.99), lat[len(lat)-1])
	if quiet || last {
		b.report("e2e_w1a_5k_latency_p99_ms", q(0.99), 1, "ms")
		b.report("e2e_w1a_5k_cpu_us_per_msg", perMsg(after.since(before, "agent"), sim.sent), 1, "us/msg")
		b.report("e2e_w1a_5k_disk_write_kib_per_s", written, 0, "KiB/s")
	}
	return quiet, nil
}

// settle waits until no envelope arrived for quiet, or timeout.
func (u *upstream) settle(ctx context.Context, quiet, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	n, since := u.col.Len(), time.Now()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case now := <-tick.C:
			if m := u.col.Len(); m != n {
				n, since = m, now
			}
			if now.Sub(since) >= quiet {
				return nil
			}
			if now.After(deadline) {
				return fmt.Errorf("upstream still receiving %s after the simulator's end", timeout)
			}
		}
	}
}
