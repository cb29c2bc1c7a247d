// Command firmware-sim simulates a fleet of sensor devices publishing
// telemetry to an MQTT broker at a precise total rate. It is the load
// generator for Sluice's benchmarks (workload W1) and end-to-end tests.
//
// Usage:
//
//	firmware-sim [--broker tcp://127.0.0.1:1883] [--devices 50] [--rate 100]
//	             [--duration 0] [--count 0] [--qos 0|1] [--topic sensors/{device}/telemetry]
//	             [--seed 1] [--client-id firmware-sim-<pid>] [--connections 1]
//	             [--quiet] [--values-out FILE] [--acked-out FILE] [--start-ts-ms MS] [--utc-offset D] [--nagle] [--raw]
//	             [--scenario FILE] [--profile temphum:6,vibration:2,power:1,door:1,motion:1,gps:1]
//	             [--burst N] [--spike P] [--shift P] [--stuck P] [--malformed P]
//	             [--duplicate P] [--skew-devices F] [--storm-every D --storm-down D]
//	             [--truth-out FILE] [--cmd-topic devices/{device}/cmd]
//	             [--log-dir DIR ...] [--summary-json FILE] [--json]
//
// By default every device is a temperature/humidity sensor publishing
// workload W1, {"device":"dev-17","temperature":23.4,"humidity":41.2,"ts":...};
// --profile or a scenario file mixes in vibration, power, door, motion and GPS
// devices (see profiles.go). Faults (faults.go) are injected at given rates
// per message and written to the ground-truth file; devices answer commands
// (commands.go) and can write log files (devlog.go).
//
// It prints a progress line every second (unless --quiet) and a summary line
// on stderr, and exits 0 when every message due was sent (and, at QoS 1,
// acknowledged) or deliberately withheld (a storm, a device interval), 1
// otherwise, 2 on bad flags or a bad scenario.
package main

import (
	"bufio"
	"context"
	"encoding/json"
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
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// shutdownGrace bounds the wait for outstanding QoS 1 acknowledgements once
// sending stops.
const shutdownGrace = 5 * time.Second

// config is the parsed command line (and scenario file).
type config struct {
	Broker      string
	Devices     int
	Rate        float64 // total messages per second
	Burst       uint64  // messages per burst; 0 or 1: evenly spaced
	Duration    time.Duration
	Count       uint64
	QoS         int
	Topic       string
	Seed        uint64
	ClientID    string
	Connections int
	Quiet       bool
	ValuesOut   string
	AckedOut    string
	StartTSMs   int64 // used when StartTSSet; otherwise the ts field starts now
	StartTSSet  bool
	UTCOffset   time.Duration // the fleet's time zone, for its daily cycles
	Nagle       bool          // TCP with Nagle's algorithm, as libmosquitto clients send
	Raw         bool          // the lean publisher of raw.go instead of paho

	Scenario    string
	ProfileSpec string          // --profile, parsed into Mix
	Mix         []ProfileWeight // nil: all temphum (W1)
	Faults      Faults
	TruthOut    string
	CmdTopic    string // "" disables commands
	Logs        Logs
	SummaryJSON string
	JSON        bool
}

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

func realMain(args []string, stdout, stderr io.Writer) int {
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
	if done := sum.Turns(); sum.Target > 0 && done < sum.Target {
		con.Logf("stopped after %d of %d messages", done, sum.Target)
	}
	if line := sum.Extra(); line != "" {
		con.Logf("%s", line)
	}
	con.Logf("%s", sum)
	if cfg.SummaryJSON != "" || cfg.JSON {
		b, jerr := json.MarshalIndent(sum.JSON(), "", "  ")
		if jerr == nil && cfg.SummaryJSON != "" {
			jerr = os.WriteFile(cfg.SummaryJSON, append(b, '\n'), 0o644)
		}
		if jerr == nil && cfg.JSON {
			_, jerr = fmt.Fprintf(stdout, "%s\n", b)
		}
		if jerr != nil {
			con.Logf("write summary: %v", jerr)
			return 1
		}
	}
	if err != nil || !sum.OK() {
		return 1
	}
	return 0
}

// parseFlags parses and checks the command line, loading the scenario file
// if one is given: the file's options replace the defaults and the flags
// given replace the file's. Errors other than flag.ErrHelp mean bad usage.
func parseFlags(args []string, stderr io.Writer) (config, error) {
	cfg := config{}
	fs := flag.NewFlagSet("firmware-sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.Broker, "broker", "tcp://127.0.0.1:1883", "MQTT broker URL (tcp://, ssl://, ws://, ...)")
	fs.IntVar(&cfg.Devices, "devices", 50, "number of simulated devices, dev-0 .. dev-(N-1), sending round-robin")
	fs.Float64Var(&cfg.Rate, "rate", 100, "total messages per second across all devices")
	fs.Uint64Var(&cfg.Burst, "burst", 1, "send the rate in bursts of this many messages (1: evenly spaced)")
	fs.DurationVar(&cfg.Duration, "duration", 0, "how long to send (0: until --count or Ctrl-C)")
	fs.Uint64Var(&cfg.Count, "count", 0, "total messages to send (0: unlimited)")
	fs.IntVar(&cfg.QoS, "qos", 0, "MQTT QoS, 0 or 1 (at 1 every message must be acknowledged)")
	fs.StringVar(&cfg.Topic, "topic", "sensors/{device}/telemetry", "topic template; {device} is replaced by the device name, {profile} by its profile")
	fs.Uint64Var(&cfg.Seed, "seed", 1, "random seed; the same seed gives the same sequence of readings and faults")
	fs.StringVar(&cfg.ClientID, "client-id", "firmware-sim-"+strconv.Itoa(os.Getpid()), "MQTT client ID (suffixed -0, -1, ... with several connections)")
	fs.IntVar(&cfg.Connections, "connections", 1, "number of MQTT connections the devices are spread over")
	fs.BoolVar(&cfg.Quiet, "quiet", false, "no progress line, only the summary")
	fs.StringVar(&cfg.ValuesOut, "values-out", "", "write a line `device value` (the primary value: temperature for W1) per well-formed sent message to this file")
	fs.StringVar(&cfg.AckedOut, "acked-out", "", "at QoS 1, write a line `device ts` per message the broker acknowledged (ts: the payload's, in ms)")
	fs.Int64Var(&cfg.StartTSMs, "start-ts-ms", 0, "ts of the first message in Unix ms (default: now); ts advances by the schedule")
	fs.BoolVar(&cfg.Nagle, "nagle", false, "send with Nagle's algorithm, as libmosquitto clients do by default (Go's is off): small messages share a TCP segment while one is unacknowledged; tcp:// brokers only")
	fs.BoolVar(&cfg.Raw, "raw", false, "publish with a lean MQTT client for load tests instead of paho: a fraction of the CPU per message, writes batched; tcp:// brokers, no reconnect, no storms, no commands (--cmd-topic \"\")")
	fs.DurationVar(&cfg.UTCOffset, "utc-offset", 0, "the fleet's time zone as an offset from UTC (-5h, 9h30m): daily cycles peak at 15:00 local time")
	fs.StringVar(&cfg.Scenario, "scenario", "", "scenario file (YAML) with the options of a run; flags given override it")
	fs.StringVar(&cfg.ProfileSpec, "profile", "", "device profiles: temphum (default), vibration, power, door, motion, gps, a mix name:weight,... or all")
	fs.Float64Var(&cfg.Faults.Spike, "spike", 0, "chance per message of a spike in the primary value")
	fs.Float64Var(&cfg.Faults.Shift, "shift", 0, "chance per message of a level shift of the device (for 1m of message time)")
	fs.Float64Var(&cfg.Faults.Stuck, "stuck", 0, "chance per message that the device's sensor sticks (for 30s)")
	fs.Float64Var(&cfg.Faults.Malformed, "malformed", 0, "chance per message of a malformed payload (bad JSON, wrong type, out of range, oversized)")
	fs.Float64Var(&cfg.Faults.Duplicate, "duplicate", 0, "chance per message that it is sent twice")
	fs.Float64Var(&cfg.Faults.SkewDevices, "skew-devices", 0, "fraction of devices whose clock is off (by up to 5m)")
	fs.DurationVar(&cfg.Faults.StormEvery, "storm-every", 0, "disconnect every connection this often (0: never)")
	fs.DurationVar(&cfg.Faults.StormDown, "storm-down", 0, "how long a storm keeps connections down (default 2s)")
	fs.StringVar(&cfg.TruthOut, "truth-out", "", "write the ground truth of injected faults to this file (JSON lines)")
	fs.StringVar(&cfg.CmdTopic, "cmd-topic", "devices/{device}/cmd", "devices answer commands on <this>/<command> with a reply on <this>/res (\"\": no commands)")
	fs.StringVar(&cfg.Logs.Dir, "log-dir", "", "write device log files <device>.log to this directory")
	fs.IntVar(&cfg.Logs.Devices, "log-devices", 0, "how many devices (the first) write log files (default 10)")
	fs.Int64Var(&cfg.Logs.MaxBytes, "log-max-bytes", 0, "rotate a device log at this size (default 1 MiB)")
	fs.StringVar(&cfg.Logs.Rotate, "log-rotate", "", "rotate by rename (default) or copytruncate")
	fs.IntVar(&cfg.Logs.Keep, "log-keep", 0, "rotated log files kept (default 3)")
	fs.StringVar(&cfg.SummaryJSON, "summary-json", "", "write the final summary as JSON to this file")
	fs.BoolVar(&cfg.JSON, "json", false, "print the final summary as JSON on stdout")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if cfg.Scenario != "" {
		sc, err := LoadScenario(cfg.Scenario)
		if err != nil {
			return cfg, err
		}
		sc.apply(&cfg)
		if err := fs.Parse(args); err != nil { // flags win
			return cfg, err
		}
	}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "start-ts-ms" {
			cfg.StartTSSet = true
		}
	})
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected argument %q (all options are flags)", fs.Arg(0))
	}
	if cfg.ProfileSpec != "" {
		mix, err := ParseMix(cfg.ProfileSpec)
		if err != nil {
			return cfg, fmt.Errorf("--profile: %w", err)
		}
		cfg.Mix = mix
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
	case c.Devices < 1 || c.Devices > 1_000_000:
		return fmt.Errorf("--devices %d: want 1 .. 1000000", c.Devices)
	case math.IsNaN(c.Rate) || c.Rate <= 0 || c.Rate > 1e7:
		return fmt.Errorf("--rate %v: want a rate in (0, 1e7] messages per second", c.Rate)
	case c.Burst > 1e6:
		return fmt.Errorf("--burst %d: want at most 1000000", c.Burst)
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
	case c.Nagle && !isPlainTCP(c.Broker):
		return fmt.Errorf("--nagle: only for tcp:// brokers (%s)", c.Broker)
	case c.Raw && !isPlainTCP(c.Broker):
		return fmt.Errorf("--raw: only for tcp:// brokers (%s)", c.Broker)
	case c.Raw && c.CmdTopic != "":
		return fmt.Errorf("--raw: raw connections take no commands: add --cmd-topic \"\" (cmd_topic: \"\" in a scenario; it is %q)", c.CmdTopic)
	case c.Raw && c.Faults.StormEvery > 0:
		return errors.New("--raw: raw connections do not reconnect, so no --storm-every")
	case c.UTCOffset < -14*time.Hour || c.UTCOffset > 14*time.Hour:
		return fmt.Errorf("--utc-offset %s: want -14h .. 14h", c.UTCOffset)
	case c.StartTSSet && c.StartTSMs < 0:
		return fmt.Errorf("--start-ts-ms %d: must not be negative", c.StartTSMs)
	}
	if c.CmdTopic != "" {
		if _, err := parseCmdTemplate(c.CmdTopic); err != nil {
			return err
		}
	}
	if err := c.Faults.check(); err != nil {
		return err
	}
	return c.Logs.check()
}

// run connects, sends the configured messages on schedule and shuts down. It
// returns an error only if it could not start (output files, connection) or
// could not write an output file; what happened to the messages is in the
// summary. When ctx is done it stops sending, waits up to shutdownGrace for
// acknowledgements and returns.
func run(ctx context.Context, cfg config, con *console) (sum summary, err error) {
	sum = summary{QoS: byte(cfg.QoS), Seed: cfg.Seed, Faults: map[string]uint64{}, Malformed: map[string]uint64{}}
	var closers []func() error // run in order at the end; the first error is returned
	defer func() {
		for _, c := range closers {
			if cerr := c(); err == nil {
				err = cerr
			}
		}
	}()

	var values *bufio.Writer
	if cfg.ValuesOut != "" {
		f, err := os.Create(cfg.ValuesOut)
		if err != nil {
			return sum, fmt.Errorf("open values file: %w", err)
		}
		values = bufio.NewWriterSize(f, 64<<10)
		closers = append(closers, func() error {
			err := values.Flush()
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("write values file: %w", err)
			}
			return nil
		})
	}
	var truth *truthWriter
	if cfg.TruthOut != "" {
		if truth, err = createTruth(cfg.TruthOut); err != nil {
			return sum, err
		}
		closers = append(closers, truth.Close)
	}

	fleet := NewFleet(FleetOptions{
		Devices: cfg.Devices, Seed: cfg.Seed, Topic: cfg.Topic, Mix: cfg.Mix, Faults: cfg.Faults,
		Interval:  time.Duration(float64(cfg.Devices) / cfg.Rate * 1e9),
		UTCOffset: cfg.UTCOffset,
	})
	sum.Profiles = map[string]int{}
	for i := range fleet.Len() {
		sum.Profiles[fleet.Profile(i).String()]++
	}
	var logs *deviceLogs
	if cfg.Logs.Dir != "" {
		names := make([]string, min(fleet.Len(), cfg.Logs.withDefaults().Devices))
		for i := range names {
			names[i] = fleet.Name(i)
		}
		if logs, err = openDeviceLogs(cfg.Logs, names); err != nil {
			return sum, err
		}
		closers = append(closers, logs.Close)
		defer func() { sum.LogRotations = logs.rotations }()
	}

	var tmpl cmdTemplate
	var filter string
	cmds := make(chan command, 256)
	if cfg.CmdTopic != "" {
		tmpl, _ = parseCmdTemplate(cfg.CmdTopic) // checked
		filter = tmpl.filter()
	}
	var cmdDropped atomic.Uint64
	onCmd := func(topic string, payload []byte) {
		dev, name, ok := tmpl.split(topic)
		if !ok || name == "res" {
			return // our own replies match the filter too
		}
		select {
		case cmds <- command{device: dev, name: name, payload: payload}:
		default:
			cmdDropped.Add(1)
		}
	}

	var pub sender
	if cfg.Raw {
		if pub, err = newRawPublisher(cfg.Broker, cfg.ClientID, cfg.Connections, byte(cfg.QoS), cfg.Nagle, con.Logf); err != nil {
			return sum, err
		}
	} else {
		pub = newPublisher(cfg.Broker, cfg.ClientID, cfg.Connections, byte(cfg.QoS), cfg.Nagle, con.Logf, filter, onCmd)
	}
	if cfg.AckedOut != "" {
		f, err := os.Create(cfg.AckedOut)
		if err != nil {
			return sum, fmt.Errorf("open acked file: %w", err)
		}
		w := bufio.NewWriterSize(f, 64<<10)
		var mu sync.Mutex // one acker goroutine per connection
		var line []byte
		pub.SetOnAck(func(dev int, ts int64) {
			mu.Lock()
			line = append(line[:0], fleet.Name(dev)...)
			line = append(line, ' ')
			line = strconv.AppendInt(line, ts, 10)
			line = append(line, '\n')
			w.Write(line)
			mu.Unlock()
		})
		// Runs after pub.Close below (closers run at return), when the
		// ackers are done.
		closers = append(closers, func() error {
			err := w.Flush()
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("write acked file: %w", err)
			}
			return nil
		})
	}
	if err := pub.Connect(ctx); err != nil {
		return sum, err
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

	p := NewBurstPacer(cfg.Rate, cfg.Burst, time.Now)
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
	sum.Target = limit
	turnMs := int64(math.Ceil(float64(cfg.Devices) / cfg.Rate * 1000))

	stormEvery, stormAt := cfg.Faults.StormEvery, cfg.Faults.StormEvery
	stormConns := max(1, int(math.Round(cfg.Faults.withDefaults().StormConns*float64(cfg.Connections))))
	storms := 0
	stormDown := cfg.Faults.withDefaults().StormDown

	// handle answers one command; nowMs is the current message time.
	handle := func(c command, nowMs int64) {
		rep, i := handleCommand(fleet, c, turnMs, nowMs)
		sum.Commands++
		b, _ := json.Marshal(rep)
		pub.Reply(tmpl.reply(c.device), b)
		if i >= 0 {
			logs.Event(i, nowMs, "INFO", c.device, "command "+c.name+" "+string(b))
		}
	}
	nowMs := func() int64 { return (tsBase + int64(p.Elapsed())) / 1e6 }

	done := ctx.Done()
	buf := make([]byte, 0, 256)
	var line []byte
	var r Reading
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var k uint64 // next turn
send:
	for {
		select {
		case c := <-cmds:
			handle(c, nowMs())
			continue
		default:
		}
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
			off := p.Offset(k)
			ts := (tsBase + int64(off)) / 1e6
			if stormEvery > 0 && off >= stormAt {
				for j := range stormConns {
					ci := (storms*stormConns + j) % cfg.Connections
					if pub.Flap(ci, stormDown) {
						sum.Storms++
						e := Event{TS: ts, Kind: "disconnect", Detail: pub.ConnID(ci), DurationMs: stormDown.Milliseconds()}
						if truth != nil {
							truth.Write(&e)
						}
					}
				}
				storms++
				stormAt += stormEvery
			}
			ci := fleet.Peek() % cfg.Connections
			if pub.Down(ci) {
				fleet.Skip()
				sum.Offline++
				continue
			}
			buf, r = fleet.Next(buf[:0], ts)
			if r.Skipped {
				sum.Withheld++
				continue
			}
			topic := fleet.Topic(r.Device)
			n := 1
			if r.Duplicate {
				n = 2
			}
			var err error
			published := 0
			for range n {
				if err = pub.Publish(ctx, ci, topic, buf, r.Device, ts); err != nil {
					break
				}
				published++
			}
			if err != nil && err == ctx.Err() {
				sum.Interrupted = true
				break send
			}
			if r.Duplicate {
				sum.Duplicates += uint64(max(published-1, 0))
			}
			for _, e := range fleet.Events() {
				e.Lost = published == 0 || (e.Kind == evDuplicate && published < 2)
				if !e.Lost {
					sum.Faults[e.Kind]++
					if e.Kind == evMalformed {
						sum.Malformed[e.Detail]++
					}
				}
				if truth != nil {
					truth.Write(&e)
				}
				if logs.enabled(r.Device) {
					b, _ := json.Marshal(e)
					level := "WARN"
					if e.Kind == evMalformed {
						level = "ERROR"
					}
					logs.Event(r.Device, ts, level, e.Device, e.Kind+" "+string(b))
				}
			}
			if published > 0 && logs.enabled(r.Device) {
				info := &profiles[fleet.Profile(r.Device)]
				logs.Reading(r.Device, ts, fleet.Name(r.Device), info.primary, r.Value, r.Prec)
			}
			if values != nil && !r.Malformed && r.Prec >= 0 {
				for range published {
					line = append(line[:0], fleet.Name(r.Device)...)
					line = append(line, ' ')
					line = strconv.AppendFloat(line, r.Value, 'f', r.Prec, 64)
					line = append(line, '\n')
					values.Write(line)
				}
			}
		}
		logs.Flush()
		pub.Flush() // the loop waits next (or ends)
		if limit > 0 && k >= limit {
			// The run lasts until the end of the last message's slot, or
			// until --duration, so that the reported rate is the real one.
			end := p.Offset(limit)
			if cfg.Duration > 0 && cfg.Duration < end {
				end = cfg.Duration
			}
			for {
				d := end - p.Elapsed()
				if d <= 0 {
					break
				}
				timer.Reset(d)
				select {
				case <-done:
					sum.Interrupted = true
				case c := <-cmds:
					timer.Stop()
					handle(c, nowMs())
					continue
				case <-timer.C:
				}
				break
			}
			break
		}
		if d := p.Pause(k); d > 0 {
			timer.Reset(d)
			select {
			case <-done:
				sum.Interrupted = true
				break send
			case c := <-cmds:
				timer.Stop()
				handle(c, nowMs())
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
	sum.Disconnects, sum.Reconnects = pub.Disconnects(), pub.Reconnects()
	sum.CommandsDropped = cmdDropped.Load()
	return sum, nil
}
