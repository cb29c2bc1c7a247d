package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/sluiceio/sluice/internal/testenv"
)

// floorCommand is the hidden subcommand that runs the floor subscriber.
const floorCommand = "floor"

// floorTopic is W1's topic filter.
const floorTopic = "sensors/+/telemetry"

// floorMain is the floor subscriber: paho.mqtt.golang with its default
// options (clean session), a QoS 0 subscription and a handler that only
// counts. It prints "floor: subscribed" once subscribed and
// "floor: done count=N" after N=--expect messages, --idle without a message
// after the first, or --timeout; then it waits for stdin to close (so that
// the harness can read its CPU time) and exits.
func floorMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench floor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	broker := fs.String("broker", "tcp://127.0.0.1:1883", "MQTT broker")
	expect := fs.Uint64("expect", 0, "done after this many messages (0: only --idle or --timeout)")
	idle := fs.Duration("idle", 2*time.Second, "done when no message came for this long after the first")
	timeout := fs.Duration("timeout", 2*time.Minute, "done at the latest this long after subscribing")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	n, err := countMessages(*broker, *expect, *idle, *timeout, stdout)
	if err != nil {
		fmt.Fprintf(stderr, "floor: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "floor: done count=%d\n", n)
	waitEOF(os.Stdin, time.Minute)
	return 0
}

// countMessages subscribes and counts until done (see floorMain).
func countMessages(broker string, expect uint64, idle, timeout time.Duration, stdout io.Writer) (uint64, error) {
	var n atomic.Uint64
	reached := make(chan struct{})
	var once sync.Once
	opts := mqtt.NewClientOptions().
		AddBroker(broker).
		SetClientID(fmt.Sprintf("bench-floor-%d", os.Getpid())).
		SetCleanSession(true)
	c := mqtt.NewClient(opts)
	if t := c.Connect(); !t.WaitTimeout(10*time.Second) || t.Error() != nil {
		return 0, fmt.Errorf("connect to %s: %v", broker, t.Error())
	}
	defer c.Disconnect(100)
	t := c.Subscribe(floorTopic, 0, func(mqtt.Client, mqtt.Message) {
		if n.Add(1) == expect {
			once.Do(func() { close(reached) })
		}
	})
	if !t.WaitTimeout(10*time.Second) || t.Error() != nil {
		return 0, fmt.Errorf("subscribe %s: %v", floorTopic, t.Error())
	}
	fmt.Fprintln(stdout, "floor: subscribed")

	deadline := time.After(timeout)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	last, lastAt := uint64(0), time.Now()
	for {
		select {
		case <-reached:
			return n.Load(), nil
		case <-deadline:
			return n.Load(), nil
		case now := <-tick.C:
			if cur := n.Load(); cur != last {
				last, lastAt = cur, now
			} else if cur > 0 && now.Sub(lastAt) >= idle {
				return cur, nil
			}
		}
	}
}

// waitEOF reads r until EOF or for at most d.
func waitEOF(r io.Reader, d time.Duration) {
	done := make(chan struct{})
	go func() {
		io.Copy(io.Discard, r)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(d):
	}
}

// floorResult is what a floor run measured.
type floorResult struct {
	sim   simResult
	count uint64
	cpu   time.Duration // from subscribed to done
	quiet bool          // no other process or the hypervisor took CPU meanwhile
}

// floorRun runs the floor subscriber under l through a fresh mosquitto, in
// a directory named after label and l.
func (b *bench) floorRun(ctx context.Context, label string, l load) (floorResult, error) {
	var f floorResult
	dir, err := b.runDir(label + "-" + l.label())
	if err != nil {
		return f, err
	}
	broker, err := testenv.StartMosquitto(dir)
	if err != nil {
		return f, err
	}
	defer broker.Stop()
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		return f, fmt.Errorf("floor stdin: %w", err)
	}
	defer stdinW.Close()
	c, err := startChild(ctx, "floor", filepath.Join(dir, "floor.log"), stdinR, b.self,
		floorCommand, "--broker", broker.URL, "--expect", strconv.Itoa(l.count))
	stdinR.Close() // the child holds the read end now
	if err != nil {
		return f, err
	}
	defer c.stop(5 * time.Second)
	if _, err := c.waitLine(ctx, "floor: subscribed", 15*time.Second); err != nil {
		return f, err
	}
	meter := b.meter(map[string]int{"floor": c.pid(), "mosquitto": broker.Cmd.Process.Pid})
	s0, err := meter.sample()
	if err != nil {
		return f, err
	}
	if f.sim, err = b.runSim(ctx, dir, broker.URL, l); err != nil {
		return f, err
	}
	line, err := c.waitLine(ctx, "floor: done", 15*time.Second)
	if err != nil {
		return f, err
	}
	s1, err := meter.sample()
	if err != nil {
		return f, err
	}
	f.cpu = s1.since(s0, "floor")
	if f.count, err = parseFloorCount(line); err != nil {
		return f, err
	}
	name := "floor " + l.label()
	b.log.Printf("%s: firmware-sim %s; floor counted %d, CPU %.2fs", name, f.sim, f.count, f.cpu.Seconds())
	f.quiet = b.checkQuiet(name, s0, s1, f.sim.cpu)
	if f.count < f.sim.sent {
		b.log.Printf("WARNING %s: counted %d of %d sent", name, f.count, f.sim.sent)
	}
	return f, nil
}

func parseFloorCount(line string) (uint64, error) {
	m := regexp.MustCompile(`count=(\d+)`).FindStringSubmatch(line)
	if m == nil {
		return 0, errors.New("floor: no count in " + strconv.Quote(line))
	}
	return strconv.ParseUint(m[1], 10, 64)
}
