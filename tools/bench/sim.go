package main

import (
	"context"

	"fmt"
	"github.com/sluiceio/sluice/internal/testenv"
	"path/filepath"
	"regexp"
	"strconv"
	"time"
)

// load is one W1 load: rate messages per second, count messages in all.
type load struct {
	rate  int
	count int
}

func loadFor(rate int, d time.Duration) load {
	return load{rate: rate, count: int(float64(rate) * d.Seconds())}
}

// label names a load in run directories and gateway ids: "5k", "20k".
func (l load) label() string {
	if l.rate%1000 == 0 {
		return fmt.Sprintf("%dk", l.rate/1000)
	}
	return strconv.Itoa(l.rate)
}

// simResult is firmware-sim's summary line and what the process cost.
type simResult struct {
	sent, errors uint64
	elapsed      time.Duration // the send phase, as the simulator measured it
	rate         float64       // sent / elapsed
	cpu          time.Duration // the whole process, connect included
	wall         time.Duration // start to exit, as the harness saw it
}

// reached reports whether the simulator sent all of l at 98% of its rate
// or better, without errors.
func (r simResult) reached(l load) bool {
	return r.errors == 0 && r.sent == uint64(l.count) && r.rate >= 0.98*float64(l.rate)
}

func (r simResult) String() string {
	return fmt.Sprintf("sent=%d errors=%d elapsed=%.3fs rate=%.0f/s cpu=%.2fs", r.sent, r.errors, r.elapsed.Seconds(), r.rate, r.cpu.Seconds())
}

// runSim runs firmware-sim with W1 (1,000 devices, QoS 0) at l against
// broker and returns its summary. A simulator that exits 1 (not every
// message sent) still has a summary; that is not an error here.
func (b *bench) runSim(ctx context.Context, dir, broker string, l load) (simResult, error) {
	start := time.Now()
	c, err := startChild(ctx, "firmware-sim", filepath.Join(dir, "firmware-sim.log"), nil, b.opts.sim,
		"--devices", "1000", "--rate", strconv.Itoa(l.rate), "--count", strconv.Itoa(l.count),
		"--qos", "0", "--quiet", "--broker", broker, "--utc-offset", afternoonOffset(start).String())
	if err != nil {
		return simResult{}, err
	}
	waitErr := c.wait(ctx)
	if ctx.Err() != nil {
		return simResult{}, ctx.Err()
	}
	line := c.lastLine("firmware-sim: sent=")
	r, err := parseSimSummary(line)
	if err != nil {
		return r, fmt.Errorf("firmware-sim (%v): %w (log: %s)", waitErr, err, c.logPath)
	}
	r.wall = time.Since(start)
	if ps := c.cmd.ProcessState; ps != nil {
		r.cpu = ps.UserTime() + ps.SystemTime()
	}
	return r, nil
}

// afternoonOffset is the time zone in which now is 15:00, the peak of the
// simulated daily cycle: the fleet's readings, and so the share of them
// that W1a's "temperature > 30" passes, do not depend on the hour the bench
// runs at (at 02:00 UTC it passed 14 records of 50,000, at 20:00 over 1,500).
func afternoonOffset(now time.Time) time.Duration {
	now = now.UTC()
	midnight := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	off := 15*time.Hour - now.Sub(midnight) // in (-9h, 15h]
	if off > 12*time.Hour {
		off -= 24 * time.Hour // firmware-sim takes -14h .. 14h
	}
	return off.Round(time.Minute)
}

// parseSimSummary reads firmware-sim's final line,
// "firmware-sim: sent=N acked=N errors=N elapsed=S.SSSs rate=R/s".
func parseSimSummary(line string) (simResult, error) {
	re := regexp.MustCompile(`sent=(\d+) acked=\d+ errors=(\d+) elapsed=([0-9.]+)s rate=([0-9.]+)/s`)
	m := re.FindStringSubmatch(line)
	if m == nil {
		return simResult{}, fmt.Errorf("no summary line (last seen: %q)", line)
	}
	var r simResult
	r.sent, _ = strconv.ParseUint(m[1], 10, 64)
	r.errors, _ = strconv.ParseUint(m[2], 10, 64)
	secs, _ := strconv.ParseFloat(m[3], 64)
	r.elapsed = time.Duration(secs * float64(time.Second))
	r.rate, _ = strconv.ParseFloat(m[4], 64)
	return r, nil
}

// simMax reports how fast firmware-sim publishes W1 at QoS 0 to mosquitto
// with nothing subscribed, asked for far more than it can do: the driver's
// own ceiling, so a reader can tell it was not what limited a figure.
func (b *bench) simMax(ctx context.Context) error {
	dir, err := b.runDir("sim-max")
	if err != nil {
		return err
	}
	m, err := testenv.StartMosquitto(dir)
	if err != nil {
		return err
	}
	defer m.Stop()
	r, err := b.runSim(ctx, dir, m.URL, load{rate: 10_000_000, count: 500_000})
	if err != nil {
		return err
	}
	if r.sent != 500_000 || r.errors != 0 {
		return fmt.Errorf("firmware-sim at full speed: %v", r)
	}
	b.report("sim_max_publish_rps", r.rate, 0, "msg/s")
	return nil
}
