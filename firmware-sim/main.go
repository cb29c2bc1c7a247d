// Command firmware-sim simulates a fleet of sensor devices publishing
// telemetry to an MQTT broker at a precise total rate. It is the load
// generator for Sluice's benchmarks (workload W1) and end-to-end tests.
//
// Usage:
//
//	firmware-sim [--broker tcp://127.0.0.1:1883] [--devices 50] [--rate 100]
//	             [--duration 0] [--count 0] [--qos 0|1] [--topic sensors/{device}/telemetry]
//	             [--seed 1] [--client-id firmware-sim-<pid>] [--connections 1]
//	             [--quiet] [--values-out FILE] [--start-ts-ms MS]
//
// It prints a progress line every second (unless --quiet) and a summary line
// on stderr, and exits 0 when every message was sent (and, at QoS 1,
// acknowledged), 1 otherwise, 2 on bad flags.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// shutdownGrace bounds the wait for outstanding QoS 1 acknowledgements once
// sending stops.
const shutdownGrace = 5 * time.Second

// config is the parsed command line.
type config struct {
	Broker      string
	Devices     int
	Rate        float64 // total messages per second
	Duration    time.Duration
	Count       uint64
	QoS         int
	Topic       string
	Seed        uint64
	ClientID    string
	Connections int
	Quiet       bool
	ValuesOut   string
	StartTSMs   int64 // used when StartTSSet; otherwise the ts field starts now
	StartTSSet  bool
}

func main() {
	os.Exit(realMain(os.Args[1:], os.Stderr))
}

func realMain(args []string, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "firmware-sim: %v\n", err)
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // a second signal kills the process
	}()

	con := newConsole(stderr)
	sum, err := run(ctx, cfg, con)
	if err != nil {
		con.Logf("%v", err)
		if sum.Sent+sum.Errors == 0 {
			return 1 // never started
		}
	}
	if sum.FirstError != "" {
		con.Logf("first error: %s", sum.FirstError)
	}
	if sum.Target > 0 && sum.Sent+sum.Errors < sum.Target {
		con.Logf("stopped after %d of %d messages", sum.Sent+sum.Errors, sum.Target)
	}
	con.Logf("%s", sum)
	if err != nil || !sum.OK() {
		return 1
	}
	return 0
}

// parseFlags parses and checks the command line. Errors other than
// flag.ErrHelp mean bad usage.
func parseFlags(args []string, stderr io.Writer) (config, error) {
	cfg := config{}
	fs := flag.NewFlagSet("firmware-sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.Broker, "broker", "tcp://127.0.0.1:1883", "MQTT broker URL (tcp://, ssl://, ws://, ...)")
	fs.IntVar(&cfg.Devices, "devices", 50, "number of simulated devices, dev-0 .. dev-(N-1), sending round-robin")
	fs.Float64Var(&cfg.Rate, "rate", 100, "total messages per second across all devices")
	fs.DurationVar(&cfg.Duration, "duration", 0, "how long to send (0: until --count or Ctrl-C)")
	fs.Uint64Var(&cfg.Count, "count", 0, "total messages to send (0: unlimited)")
	fs.IntVar(&cfg.QoS, "qos", 0, "MQTT QoS, 0 or 1 (at 1 every message must be acknowledged)")
	fs.StringVar(&cfg.Topic, "topic", "sensors/{device}/telemetry", "topic template; {device} is replaced by the device name")
	fs.Uint64Var(&cfg.Seed, "seed", 1, "random seed; the same seed gives the same sequence of readings")
	fs.StringVar(&cfg.ClientID, "client-id", "firmware-sim-"+strconv.Itoa(os.Getpid()), "MQTT client ID (suffixed -0, -1, ... with several connections)")
	fs.IntVar(&cfg.Connections, "connections", 1, "number of MQTT connections the devices are spread over")
	fs.BoolVar(&cfg.Quiet, "quiet", false, "no progress line, only the summary")
	fs.StringVar(&cfg.ValuesOut, "values-out", "", "write a line `device temperature` per sent message to this file")
	fs.Int64Var(&cfg.StartTSMs, "start-ts-ms", 0, "ts of the first message in Unix ms (default: now); ts advances by the schedule")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "start-ts-ms" {
			cfg.StartTSSet = true
		}
	})
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected argument %q (all options are flags)", fs.Arg(0))
	}
	return cfg, cfg.check()
}

func (c config) check() error {
	u, err := url.Parse(c.Broker)
	switch {
	case err != nil:
		return fmt.Errorf("--broker %q: %v", c.Broker, err)
	case u.Scheme == "" || u.Host == "":
		return fmt.Errorf("--broker %q: want a URL like tcp://host:1883", c.Broker)
	case c.Devices < 1:
		return fmt.Errorf("--devices %d: need at least 1", c.Devices)
	case math.IsNaN(c.Rate) || c.Rate <= 0 || c.Rate > 1e7:
		return fmt.Errorf("--rate %v: want a rate in (0, 1e7] messages per second", c.Rate)
	case c.Duration < 0:
		return fmt.Errorf("--duration %s: must not be negative", c.Duration)
	case c.QoS != 0 && c.QoS != 1:
		return fmt.Errorf("--qos %d: want 0 or 1", c.QoS)
	case c.Topic == "":
		return errors.New("--topic: must not be empty")
	case strings.ContainsAny(c.Topic, "+#\x00"):
		return fmt.Errorf("--topic %q: a publish topic cannot contain '+', '#' or NUL", c.Topic)
	case c.ClientID == "":
		return errors.New("--client-id: must not be empty")
	case c.Connections < 1 || c.Connections > c.Devices:
		return fmt.Errorf("--connections %d: want 1 .. --devices (%d)", c.Connections, c.Devices)
	case c.StartTSSet && c.StartTSMs < 0:
		return fmt.Errorf("--start-ts-ms %d: must not be negative", c.StartTSMs)
	}
	return nil
}

// run connects, sends the configured messages on schedule and shuts down. It
// returns an error only if it could not start (values file, connection);
// what happened to the messages is in the summary. When ctx is done it stops
// sending, waits up to shutdownGrace for acknowledgements and returns.
func run(ctx context.Context, cfg config, con *console) (summary, error) {
	var valuesFile *os.File
	var values *bufio.Writer
	if cfg.ValuesOut != "" {
		f, err := os.Create(cfg.ValuesOut)
		if err != nil {
			return summary{}, fmt.Errorf("open values file: %w", err)
		}
		defer f.Close() // on early return; the normal path checks Close below
		valuesFile, values = f, bufio.NewWriterSize(f, 64<<10)
	}

	fleet := NewFleet(cfg.Devices, cfg.Seed, cfg.Topic)
	pub := newPublisher(cfg.Broker, cfg.ClientID, cfg.Connections, byte(cfg.QoS), con.Logf)
	if err := pub.Connect(ctx); err != nil {
		return summary{}, err
	}

	stopProgress, progressDone := make(chan struct{}), make(chan struct{})
	if cfg.Quiet {
		close(progressDone)
	} else {
		go func() {
			defer close(progressDone)
			progress(con, pub, stopProgress)
		}()
	}

	p := NewPacer(cfg.Rate, time.Now)
	tsBase := p.Start().UnixNano()
	if cfg.StartTSSet {
		tsBase = cfg.StartTSMs * 1e6
	}
	limit := cfg.Count // 0: unbounded
	if cfg.Duration > 0 {
		if n := p.DueAt(cfg.Duration - 1); limit == 0 || n < limit {
			limit = n
		}
	}

	sum := summary{Target: limit, QoS: byte(cfg.QoS)}
	done := ctx.Done()
	buf := make([]byte, 0, 128)
	var line []byte
	var r Reading
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var k uint64 // next message
send:
	for {
		due := p.Due()
		if limit > 0 && due > limit {
			due = limit
		}
		for ; k < due; k++ {
			select {
			case <-done:
				sum.Interrupted = true
				break send
			default:
			}
			// ts is the message's scheduled time, so it does not depend on
			// how late the loop runs and is reproducible with --start-ts-ms.
			buf, r = fleet.Next(buf[:0], (tsBase+int64(p.Offset(k)))/1e6)
			err := pub.Publish(ctx, r.Device%cfg.Connections, fleet.Topic(r.Device), buf)
			if err != nil && err == ctx.Err() {
				sum.Interrupted = true
				break send
			}
			if err == nil && values != nil {
				line = append(line[:0], fleet.Name(r.Device)...)
				line = append(line, ' ')
				line = strconv.AppendFloat(line, r.Temperature, 'f', 1, 64)
				line = append(line, '\n')
				values.Write(line)
			}
		}
		if limit > 0 && k >= limit {
			// The run lasts until the end of the last message's slot, or
			// until --duration, so that the reported rate is the real one.
			end := p.Offset(limit)
			if cfg.Duration > 0 && cfg.Duration < end {
				end = cfg.Duration
			}
			if d := end - p.Elapsed(); d > 0 {
				timer.Reset(d)
				select {
				case <-done:
					sum.Interrupted = true
				case <-timer.C:
				}
			}
			break
		}
		if d := p.Pause(k); d > 0 {
			timer.Reset(d)
			select {
			case <-done:
				sum.Interrupted = true
				break send
			case <-timer.C:
			}
		}
	}
	sum.Elapsed = p.Elapsed()

	close(stopProgress)
	<-progressDone
	pub.Close(shutdownGrace)

	sum.Sent, sum.Acked, sum.Errors = pub.Sent(), pub.Acked(), pub.Errors()
	sum.FirstError = pub.FirstError()
	if values != nil {
		err := values.Flush()
		if cerr := valuesFile.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return sum, fmt.Errorf("write values file: %w", err)
		}
	}
	return sum, nil
}
