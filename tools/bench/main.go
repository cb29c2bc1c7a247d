// Command bench measures Sluice end to end on workload W1 and prints one
// line per figure on stdout, as soon as the figure is known:
//
//	BENCH <name> <value> <unit>
//
// Progress and diagnostics go to stderr. `make bench` runs it as
//
//	go run ./tools/bench --sluice bin/sluice --sim bin/firmware-sim
//
// # Workload W1
//
// firmware-sim drives 1,000 devices publishing
// {"device":"dev-17","temperature":23.4,"humidity":41.2,"ts":...} to
// sensors/<device>/telemetry at QoS 0 through mosquitto (the README's
// settings) on loopback. The agent subscribes sensors/+/telemetry, computes
// avg/max/count of temperature per device over a tumbling 10 s window,
// commits every output to its bbolt buffer (fsync on, default group commit)
// and forwards it to a JetStream stream of an embedded nats-server. A message
// is "counted upstream" when the sum of the count column n over the
// envelopes in the stream includes it.
//
// W1a is the same load through a stateless rule (where temperature > 30,
// the record's temperature and ts upstream): its figure is latency, from the
// ts firmware-sim writes just before publishing to the arrival of the
// output at the upstream consumer, so the cost of read coalescing and group
// commit on latency is visible beside their gain in CPU.
//
// # Method
//
// Every run gets a fresh mosquitto, a fresh agent with a fresh data dir, its
// own gateway id and its own stream. CPU is user+system time from
// /proc/<pid>/stat (all threads), read when the agent logs "mqtt subscribed"
// and again when every message the simulator sent is counted upstream; so it
// includes closing the last window, committing and forwarding, and the few
// idle seconds until the window ends. The figure is that CPU time divided by
// the messages sent.
//
// The floor is a bare paho.mqtt.golang subscriber (default options, clean
// session, QoS 0) that only counts messages, in a process of its own (this
// binary, hidden subcommand "floor"), under the same load and measured the
// same way. It is the cost of receiving MQTT in Go at all.
//
// At 5k and 20k the agent and the floor run --repeat times (3 by default),
// one after the other each time, so that both see the same minutes of a
// machine whose speed drifts; the figures are the medians (the peak RSS is
// the highest), and stderr gives each run's ratio. A pair during which the
// machine was not quiet (other processes or the hypervisor took over 0.15
// cores) is discarded and run again, up to 6 times per rate; after that
// the noisy pairs count, with a WARNING on stderr.
//
// The maximum rate steps through rates (5 s of load each, fresh agent)
// and stops at the first one where the upstream count is short 15 s after
// the simulator ended or the simulator fell below 98% of the rate; it
// reports the last rate that passed (the 20k run above counts as the first
// step). stderr says which process was the limit, with the CPU (in cores)
// that the agent, mosquitto and the simulator used during the load. The
// criterion is lenient by design: mosquitto queues without limit, so an
// agent that falls behind during 5 s of load still passes if it catches up
// within the grace; stderr shows its CPU after the load (its backlog).
//
// # Figures
//
//	idle_rss_mb                        agent RSS 5 s after subscribing, no load
//	idle_rss_anon_mb                   its anonymous part (heap, stacks, runtime)
//	e2e_w1_{5k,20k}_cpu_us_per_msg     agent CPU per message
//	e2e_w1_{5k,20k}_floor_cpu_us_per_msg  the bare subscriber's, same load
//	e2e_w1_{5k,20k}_allocs_per_msg     agent heap allocations per message, same span as its CPU
//	e2e_w1_5k_broker_cpu_us_per_msg    mosquitto's, during the 5k agent run
//	e2e_w1a_5k_latency_p99_ms          W1a: record ts to upstream arrival, p99
//	e2e_w1a_5k_cpu_us_per_msg          W1a: agent CPU per message
//	e2e_w1a_5k_disk_write_kib_per_s    W1a: what the agent wrote to storage per second of load
//	e2e_w1_20k_peak_rss_mb             agent VmHWM after the 20k run
//	e2e_w1_20k_disk_write_kib_per_s    what the agent wrote to storage (/proc/<pid>/io
//	                                   write_bytes) from subscribed to counted, per
//	                                   second of load
//	e2e_w1_max_msgs_per_s              highest rate counted in full
//	binary_size_mb_arm64               static, stripped linux/arm64 agent
//
// # Reading the figures
//
// Absolute figures move by up to 2x between days on the same VM (noisy
// neighbours, CPU frequency). Compare a change by the ratio of the agent's
// CPU per message to the floor's from the same run, never by absolute
// figures across runs. CPU is counted in clock ticks (usually 10 ms), so a
// figure is good to about 2% at 5k msg/s.
//
// firmware-sim sends in bursts at least 1 ms apart (5 messages at 5k
// msg/s, 20 at 20k), and wake-ups dominate the cost of receiving, so CPU
// per message falls as the rate rises; real devices spread their messages
// more evenly than that.
//
// The simulator, mosquitto, the agent and this process (nats-server, the
// upstream consumer) share the machine's cores: the maximum rate is the
// machine's, not the agent's alone.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sluiceio/sluice/agent/config"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == floorCommand {
		os.Exit(floorMain(os.Args[2:], os.Stdout, os.Stderr))
	}
	os.Exit(benchMain(os.Args[1:], os.Stdout, os.Stderr))
}

// options are the command line of the harness.
type options struct {
	sluice, sim  string
	maxRates     []int
	keep         bool
	only         map[string]bool // runs to do; all when empty
	readCoalesce time.Duration   // the agent's read_coalesce
	cpuProfile   string          // SLUICE_CPUPROFILE for the agents (a pprof build)
	quickAck     bool            // the agent's mqtt quick_ack
	maxAckDelay  time.Duration   // the agent's mqtt max_ack_delay
	repeat       int             // agent and floor runs per W1 rate (medians reported)
}

func parseOptions(args []string, stderr io.Writer) (options, error) {
	var o options
	var rates string
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.sluice, "sluice", "bin/sluice", "agent binary")
	fs.StringVar(&o.sim, "sim", "bin/firmware-sim", "firmware-sim binary")
	fs.StringVar(&rates, "max-rates", "30000,50000,75000,100000,150000,200000,250000,300000,400000", "rates (msg/s) the maximum-rate search steps through, after the 20k run")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory (configs, logs) and print its path")
	fs.BoolVar(&o.quickAck, "quick-ack", false, "the agent's mqtt quick_ack (lower latency, more CPU)")
	fs.IntVar(&o.repeat, "repeat", 3, "agent and floor runs, alternating, per W1 rate (5k, 20k); the figures are their medians")
	fs.DurationVar(&o.readCoalesce, "read-coalesce", config.DefaultReadCoalesce, "the agent's mqtt read_coalesce (0 turns it off)")
	fs.DurationVar(&o.maxAckDelay, "max-ack-delay", config.DefaultMaxAckDelay, "the agent's mqtt max_ack_delay (0: the kernel's delayed ACK)")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "agents write a CPU profile here (needs a binary built with -tags pprof; the last agent run wins: use with --only)")
	only := fs.String("only", "", "comma-separated runs to do: idle, 5k, w1a, 20k, max, sim, size (default all)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.repeat < 1 {
		return o, fmt.Errorf("--repeat %d: want at least 1", o.repeat)
	}
	if *only != "" {
		o.only = map[string]bool{}
		for _, n := range strings.Split(*only, ",") {
			o.only[strings.TrimSpace(n)] = true
		}
	}
	for _, s := range strings.Split(rates, ",") {
		r, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || r <= 0 {
			return o, fmt.Errorf("--max-rates: %q is not a positive integer", s)
		}
		o.maxRates = append(o.maxRates, r)
	}
	return o, nil
}

func benchMain(args []string, stdout, stderr io.Writer) int {
	logger := log.New(stderr, "bench: ", 0)
	opts, err := parseOptions(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		logger.Print(err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // a second Ctrl-C kills the harness outright
	}()

	if opts.cpuProfile != "" {
		// The agents inherit the harness's environment.
		os.Setenv("SLUICE_CPUPROFILE", opts.cpuProfile)
	}
	start := time.Now()
	b, err := newBench(opts, stdout, logger)
	if err != nil {
		logger.Print(err)
		return 1
	}
	failed := b.runAll(ctx)
	b.close()
	logger.Printf("done in %s", time.Since(start).Round(time.Second))
	switch {
	case ctx.Err() != nil:
		logger.Print("interrupted")
		return 130
	case failed > 0:
		logger.Printf("%d figure(s) could not be measured", failed)
		return 1
	}
	return 0
}
