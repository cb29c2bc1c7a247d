// Command benchingest measures the agent's ingest and prints BENCH lines:
//
//	decode_validate_json_rps              records/s decoded and validated on one
//	                                      core: a 150-byte telemetry JSON with 5
//	                                      fields through the JSON decoder and an
//	                                      input stage with a schema (the
//	                                      pipeline's own code, in process)
//	decode_validate_json_cpu_us_per_msg   CPU time per record of the above
//	ingest_mqtt_to_commit_rps             messages/s sustained from mosquitto
//	                                      through the agent (a subprocess) to
//	                                      the buffer commit that acks them,
//	                                      firmware-sim publishing QoS 1 beside
//	                                      them on the same machine
//	ingest_mqtt_to_commit_cpu_us_per_msg  the agent's CPU time (/proc) per
//	                                      message of the above
//
// The second pair is measured over a steady window in the middle of the
// run, from the agent's status API (messages handled: with QoS 1 acked only
// after the commit and at most max_inflight unacked, the handled rate is
// the committed rate) and its /proc CPU time. The publisher shares the
// machine's two cores with the broker and the agent, so what it costs is
// taken from them: firmware-sim publishes with --raw, its lean MQTT client
// for load tests, a third of paho's CPU per message.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sluiceio/sluice/agent/api"
	"github.com/sluiceio/sluice/agent/ingest"
	"github.com/sluiceio/sluice/internal/benchutil"
	"github.com/sluiceio/sluice/internal/testenv"
	"github.com/sluiceio/sluice/rules"
)

func main() {
	sluice := flag.String("sluice", "bin/sluice", "agent binary")
	sim := flag.String("sim", "bin/firmware-sim", "firmware-sim binary")
	decodeFor := flag.Duration("decode-for", 3*time.Second, "how long to run the decode and validate loop")
	rate := flag.Float64("rate", 200_000, "firmware-sim's offered rate (messages/s); above what the machine sustains")
	warmup := flag.Duration("warmup", 3*time.Second, "MQTT run time before the measured window")
	window := flag.Duration("window", 6*time.Second, "measured window of the MQTT run")
	only := flag.String("only", "", "run only decode or mqtt")
	flag.Parse()
	logger := log.New(os.Stderr, "benchingest: ", 0)
	clk := benchutil.NewClock(logger.Printf)

	if *only == "" || *only == "decode" {
		rps, us, err := decodeValidate(clk, *decodeFor)
		if err != nil {
			logger.Fatal(err)
		}
		fmt.Printf("BENCH decode_validate_json_rps %.0f records/s\n", rps)
		fmt.Printf("BENCH decode_validate_json_cpu_us_per_msg %.3f us\n", us)
	}
	if *only == "" || *only == "mqtt" {
		m := mqttRun{clk: clk, sluice: *sluice, sim: *sim, rate: *rate, warmup: *warmup, window: *window, log: logger}
		rps, us, err := m.run(context.Background())
		if err != nil {
			logger.Fatal(err)
		}
		fmt.Printf("BENCH ingest_mqtt_to_commit_rps %.0f messages/s\n", rps)
		fmt.Printf("BENCH ingest_mqtt_to_commit_cpu_us_per_msg %.2f us\n", us)
	}
}

// telemetry returns n distinct payloads of about 150 bytes with 5 fields,
// as a device sends them.
func telemetry(n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = fmt.Appendf(nil, `{"device": "line-%d/pump-station-%04d", "site": "plant-%c/north-hall-building-b", "temperature": %.2f, "humidity": %.1f, "ts": %d}`,
			i%8, i%1000, 'a'+i%3, 20+float64(i%4000)/100, 30+float64(i%600)/10, 1764234060000+int64(i)*10)
	}
	return out
}

// stageSchema is the schema of the decode benchmark: every field checked.
func stageSchema() []ingest.FieldSpec {
	lo, hi := -40.0, 150.0
	hlo, hhi := 0.0, 100.0
	return []ingest.FieldSpec{
		{Name: "device", Required: true, Type: "string"},
		{Name: "site", Required: true, Type: "string", Enum: []string{"plant-a/north-hall-building-b", "plant-b/north-hall-building-b", "plant-c/north-hall-building-b"}},
		{Name: "temperature", Required: true, Type: "number", Min: &lo, Max: &hi},
		{Name: "humidity", Type: "number", Min: &hlo, Max: &hhi},
		{Name: "ts", Required: true, Type: "number"},
	}
}

// decodeValidate runs the JSON decoder and an input stage with a schema over
// distinct payloads on one core for d and returns records/s and CPU µs per
// record.
func decodeValidate(clk benchutil.Clock, d time.Duration) (rps, usPerMsg float64, err error) {
	payloads := telemetry(4096)
	if n := len(payloads[0]); n < 130 || n > 170 {
		return 0, 0, fmt.Errorf("payload is %d bytes, want about 150: %s", n, payloads[0])
	}
	dec, err := ingest.NewDecoder("json", ingest.DecoderOptions{})
	if err != nil {
		return 0, 0, err
	}
	stage, err := ingest.NewStage(ingest.StageOptions{Schema: stageSchema()})
	if err != nil {
		return 0, 0, err
	}
	var rec rules.Record
	// Every payload must pass, or the figure would count failures.
	for _, p := range payloads {
		rec.Reset()
		if err := dec.Decode(p, &rec); err != nil {
			return 0, 0, fmt.Errorf("decode %s: %w", p, err)
		}
		if err := stage.Apply(&rec); err != nil {
			return 0, 0, fmt.Errorf("stage %s: %w", p, err)
		}
		if len(rec.Fields) != 5 {
			return 0, 0, fmt.Errorf("decoded %d fields from %s, want 5", len(rec.Fields), p)
		}
	}

	// One core: the loop and the garbage collector share one P, and the
	// OS thread stays on it.
	prev := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(prev)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	runtime.GC()
	pid := os.Getpid()
	c0, err := clk.CPU(pid)
	if err != nil {
		return 0, 0, err
	}
	start := time.Now()
	var n int
	for time.Since(start) < d {
		for range 64 * 1024 {
			rec.Reset()
			p := payloads[n&(len(payloads)-1)]
			if err := dec.Decode(p, &rec); err != nil {
				return 0, 0, err
			}
			if err := stage.Apply(&rec); err != nil {
				return 0, 0, err
			}
			n++
		}
	}
	took := time.Since(start)
	c1, err := clk.CPU(pid)
	if err != nil {
		return 0, 0, err
	}
	return float64(n) / took.Seconds(), float64((c1 - c0).Microseconds()) / float64(n), nil
}

// agentConfig is the MQTT benchmark's agent: QoS 1 in, a per-device
// summary (W1's rule), JetStream out, the buffer on its defaults (fsync on).
const agentConfig = `gateway: bench-ingest
data_dir: %s
api: {listen: %q}
inputs:
  - name: telemetry
    mqtt:
      url: %s
      client_id: bench-ingest
      topics: [sensors/+/telemetry]
      qos: 1
rules:
  - name: w1
    from: telemetry
    group_by: [device]
    window: {tumbling: 10s}
    select: {avg_t: avg(temperature), max_t: max(temperature), n: count(*)}
uplinks:
  - name: cloud
    nats: {url: %q, subject: "telemetry.{gateway}.{rule}"}
`

type mqttRun struct {
	clk            benchutil.Clock
	sluice, sim    string
	rate           float64
	warmup, window time.Duration
	log            *log.Logger
}

// run starts mosquitto, JetStream, the agent and firmware-sim, and measures
// the agent over the window.
func (m mqttRun) run(ctx context.Context) (rps, usPerMsg float64, err error) {
	for _, bin := range []string{m.sluice, m.sim} {
		if _, err := os.Stat(bin); err != nil {
			return 0, 0, fmt.Errorf("%w (run `make build`, or pass -sluice and -sim)", err)
		}
	}
	dir, err := os.MkdirTemp("", "benchingest-")
	if err != nil {
		return 0, 0, err
	}
	defer os.RemoveAll(dir)
	mosq, err := testenv.StartMosquitto(dir)
	if err != nil {
		return 0, 0, err
	}
	defer mosq.Stop()
	ns, err := testenv.StartNATS(filepath.Join(dir, "js"))
	if err != nil {
		return 0, 0, err
	}
	defer ns.Shutdown()
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		return 0, 0, err
	}
	defer nc.Close()
	if _, err := testenv.CreateStream(ctx, nc, "TELEMETRY", "telemetry.>"); err != nil {
		return 0, 0, err
	}
	port, err := testenv.FreePort()
	if err != nil {
		return 0, 0, err
	}
	apiAddr := "127.0.0.1:" + strconv.Itoa(port)
	cfg := filepath.Join(dir, "sluice.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(agentConfig, filepath.Join(dir, "data"), apiAddr, mosq.URL, ns.ClientURL())), 0o600); err != nil {
		return 0, 0, err
	}

	agent := exec.Command(m.sluice, "run", "--config", cfg)
	stderr, err := agent.StderrPipe()
	if err != nil {
		return 0, 0, err
	}
	logf, err := os.Create(filepath.Join(dir, "agent.log"))
	if err != nil {
		return 0, 0, err
	}
	defer logf.Close()
	lines := testenv.WatchLines(stderr, func(l string) { fmt.Fprintln(logf, l) })
	if err := agent.Start(); err != nil {
		return 0, 0, fmt.Errorf("start agent: %w", err)
	}
	agentDone := make(chan struct{})
	go func() { agent.Wait(); close(agentDone) }()
	defer func() {
		agent.Process.Signal(syscall.SIGTERM)
		select {
		case <-agentDone:
		case <-time.After(15 * time.Second):
			agent.Process.Kill()
			<-agentDone
		}
	}()
	if err := lines.Wait("mqtt subscribed", 15*time.Second); err != nil {
		return 0, 0, fmt.Errorf("agent: %w", err)
	}

	// firmware-sim offers more than the machine sustains and is stopped
	// (SIGINT) after the window.
	simCmd := exec.CommandContext(ctx, m.sim, "--broker", mosq.URL, "--qos", "1", "--devices", "1000",
		"--connections", "1", "--rate", fmt.Sprint(m.rate), "--cmd-topic", "",
		"--client-id", "bench-ingest-sim", "--quiet", "--raw")
	simOut, err := os.Create(filepath.Join(dir, "sim.log"))
	if err != nil {
		return 0, 0, err
	}
	defer simOut.Close()
	simCmd.Stdout, simCmd.Stderr = simOut, simOut
	if err := simCmd.Start(); err != nil {
		return 0, 0, fmt.Errorf("start firmware-sim: %w", err)
	}
	simDone := make(chan error, 1)
	go func() { simDone <- simCmd.Wait() }()

	// Pacing the measurement: a warmup, then a window.
	time.Sleep(m.warmup)
	pids := []int{agent.Process.Pid, mosq.Cmd.Process.Pid, simCmd.Process.Pid}
	s0, err := m.sample(pids, apiAddr)
	if err != nil {
		return 0, 0, err
	}
	time.Sleep(m.window)
	s1, err := m.sample(pids, apiAddr)
	if err != nil {
		return 0, 0, err
	}
	simCmd.Process.Signal(os.Interrupt)
	if err := <-simDone; err != nil {
		// At a rate above what the machine sustains, messages still
		// unacknowledged when it stops count as errors: say so, go on.
		b, _ := os.ReadFile(simOut.Name())
		m.log.Printf("firmware-sim: %v: %s", err, lastLine(b))
	} else {
		b, _ := os.ReadFile(simOut.Name())
		m.log.Printf("firmware-sim: %s", lastLine(b))
	}
	msgs := s1.messages - s0.messages
	if msgs == 0 {
		return 0, 0, errors.New("the agent handled no message in the window")
	}
	if s1.deadLetters != s0.deadLetters {
		return 0, 0, fmt.Errorf("%d dead letters in the window", s1.deadLetters-s0.deadLetters)
	}
	wall := s1.at.Sub(s0.at)
	cores := func(i int) float64 { return (s1.cpu[i] - s0.cpu[i]).Seconds() / wall.Seconds() }
	busy := (s1.busy - s0.busy).Seconds() / wall.Seconds()
	m.log.Printf("window: %d messages in %s, %d commits; cores used: agent %.2f, mosquitto %.2f, firmware-sim %.2f, machine %.2f of %d",
		msgs, wall.Round(time.Millisecond), s1.commits-s0.commits, cores(0), cores(1), cores(2), busy, runtime.NumCPU())
	return float64(msgs) / wall.Seconds(), float64((s1.cpu[0] - s0.cpu[0]).Microseconds()) / float64(msgs), nil
}

type sample struct {
	at                    time.Time
	cpu                   []time.Duration // of the pids sampled
	busy                  time.Duration   // the machine's
	messages, deadLetters uint64
	commits               uint64
}

// sample reads the agent's status and the CPU time of pids (the agent's
// first) and of the machine at one moment.
func (m mqttRun) sample(pids []int, apiAddr string) (sample, error) {
	s := sample{at: time.Now()}
	for _, pid := range pids {
		c, err := m.clk.CPU(pid)
		if err != nil {
			return s, err
		}
		s.cpu = append(s.cpu, c)
	}
	var err error
	if s.busy, _, err = m.clk.Machine(); err != nil {
		return s, err
	}
	resp, err := http.Get("http://" + apiAddr + "/api/v1/status")
	if err != nil {
		return s, fmt.Errorf("agent status: %w", err)
	}
	defer resp.Body.Close()
	var st api.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return s, fmt.Errorf("agent status: %w", err)
	}
	if len(st.Inputs) != 1 {
		return s, fmt.Errorf("agent status: %d inputs", len(st.Inputs))
	}
	s.messages, s.deadLetters, s.commits = st.Inputs[0].Messages, st.Inputs[0].DeadLetters, st.Pipeline.Commits
	return s, nil
}

func lastLine(b []byte) string {
	for len(b) > 0 && b[len(b)-1] == '\n' {
		b = b[:len(b)-1]
	}
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == '\n' {
			return string(b[i+1:])
		}
	}
	return string(b)
}
