// Command benchuplink measures the uplinks' delivery throughput and CPU cost
// on this machine and prints BENCH lines:
//
//	uplink_nats_jetstream_rps          records/s acknowledged by JetStream, one
//	                                   message per record, fast batches (the
//	                                   stream allows them); median of -repeat runs
//	uplink_nats_jetstream_cpu_us_per_msg  CPU of the sending process per record
//	uplink_nats_jetstream_floor_rps    the yardstick: the same fast batches
//	                                   from a bare publisher (floor.go), run
//	                                   beside it: what the server takes
//	uplink_nats_jetstream_floor_cpu_us_per_msg
//	uplink_nats_jetstream_acked_rps    the same to a stream without fast
//	                                   batches: a JSON ack per message
//	uplink_nats_jetstream_acked_cpu_us_per_msg
//	uplink_nats_jetstream_packed_rps   the same with nats.pack (100 envelopes per message, zstd)
//	uplink_nats_jetstream_packed_cpu_us_per_msg
//	uplink_kafka_rps                   records/s acknowledged by Kafka (acks=all, idempotent)
//	uplink_kafka_cpu_us_per_msg        CPU of the sending process per record
//
// Records are 200-byte envelopes delivered with uplink.Deliver in batches as
// the forwarder composes them by default (pipeline.DefaultBatchRecords and
// DefaultBatchBytes, counted as the forwarder counts them: 3,971 of these
// envelopes fill its 1 MiB today). The upstream (an embedded
// nats-server with a file-backed JetStream stream, or franz-go's kfake with
// one broker and a topic of three partitions) runs in a child process of
// this command, so the CPU figures are the gateway's side only.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"os/exec"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sluiceio/sluice/agent/pipeline"
	"github.com/sluiceio/sluice/buffer"
	"github.com/sluiceio/sluice/internal/benchutil"
	"github.com/sluiceio/sluice/internal/testenv"
	"github.com/sluiceio/sluice/uplink"
)

const gateway = "gw-bench"

func main() {
	records := flag.Int("records", 400_000, "records to deliver per uplink")
	batch := flag.Int("batch", 0, "records per Deliver call (default: as many as the forwarder's default bounds take)")
	only := flag.String("only", "", "run one uplink only: nats or kafka")
	serve := flag.String("serve", "", "internal: run the upstream (nats or kafka) in this process")
	cpuprofile := flag.String("cpuprofile", "", "write the sending side's CPU profile to this file")
	repeat := flag.Int("repeat", 3, "JetStream fast batch runs of the uplink and of the bare publisher, alternating (medians reported)")
	flag.Parse()
	log.SetFlags(0)
	if *repeat < 1 {
		log.Fatalf("-repeat %d: want at least 1", *repeat)
	}
	if *batch <= 0 {
		*batch = forwarderBatch()
	}
	*records = (*records + *batch - 1) / *batch * *batch // whole batches: the checks count them
	if *cpuprofile != "" && *serve == "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	if *serve != "" {
		if err := runUpstream(*serve); err != nil {
			log.Fatal(err)
		}
		return
	}
	if *only == "" || *only == "nats" {
		// The uplink and the bare publisher alternate, and the figures
		// are medians: the server's figure drifts by 5-10% from one run
		// to the next on this kind of machine.
		var upRPS, upCPU, floorRPS, floorCPU, ratios []float64
		for i := 0; i < *repeat; i++ {
			// Each goes first in every other run, so that neither always
			// meets the machine a run later.
			var rps, cpu, frps, fcpu float64
			var err, ferr error
			if i%2 == 0 {
				rps, cpu, err = benchNATS(*records, *batch, uplink.Pack{}, true)
				frps, fcpu, ferr = benchNATSFloor(*records, *batch)
			} else {
				frps, fcpu, ferr = benchNATSFloor(*records, *batch)
				rps, cpu, err = benchNATS(*records, *batch, uplink.Pack{}, true)
			}
			if err != nil {
				log.Fatalf("nats: %v", err)
			}
			if ferr != nil {
				log.Fatalf("nats floor: %v", ferr)
			}
			fmt.Printf("benchuplink: JetStream fast batches, run %d: uplink %.0f records/s (%.2f µs), bare publisher %.0f (%.2f µs): %.2f\n", i+1, rps, cpu, frps, fcpu, rps/frps)
			upRPS, upCPU = append(upRPS, rps), append(upCPU, cpu)
			floorRPS, floorCPU = append(floorRPS, frps), append(floorCPU, fcpu)
			ratios = append(ratios, rps/frps)
		}
		fmt.Printf("BENCH uplink_nats_jetstream_rps %.0f records/s\n", benchutil.Median(upRPS))
		fmt.Printf("BENCH uplink_nats_jetstream_cpu_us_per_msg %.2f us\n", benchutil.Median(upCPU))
		fmt.Printf("BENCH uplink_nats_jetstream_floor_rps %.0f records/s\n", benchutil.Median(floorRPS))
		fmt.Printf("BENCH uplink_nats_jetstream_floor_cpu_us_per_msg %.2f us\n", benchutil.Median(floorCPU))
		fmt.Printf("benchuplink: JetStream fast batches: the uplink reached %.2f of the bare publisher's records/s (median of the runs' ratios %.2f)\n", benchutil.Median(ratios), ratios)
		rps, cpu, err := benchNATS(*records, *batch, uplink.Pack{}, false)
		if err != nil {
			log.Fatalf("nats acked: %v", err)
		}
		fmt.Printf("BENCH uplink_nats_jetstream_acked_rps %.0f records/s\n", rps)
		fmt.Printf("BENCH uplink_nats_jetstream_acked_cpu_us_per_msg %.2f us\n", cpu)
		rps, cpu, err = benchNATS(*records, *batch, uplink.Pack{MaxRecords: packRecords, Compression: "zstd"}, false)
		if err != nil {
			log.Fatalf("nats packed: %v", err)
		}
		fmt.Printf("BENCH uplink_nats_jetstream_packed_rps %.0f records/s\n", rps)
		fmt.Printf("BENCH uplink_nats_jetstream_packed_cpu_us_per_msg %.2f us\n", cpu)
	}
	if *only == "" || *only == "kafka" {
		rps, cpu, err := benchKafka(*records, *batch)
		if err != nil {
			log.Fatalf("kafka: %v", err)
		}
		fmt.Printf("BENCH uplink_kafka_rps %.0f records/s\n", rps)
		fmt.Printf("BENCH uplink_kafka_cpu_us_per_msg %.2f us\n", cpu)
	}
}

// runUpstream serves an upstream, prints its address on stdout and runs
// until stdin is closed (the parent exited or is done).
func runUpstream(kind string) error {
	switch kind {
	case "nats":
		dir, err := os.MkdirTemp("", "sluice-benchuplink-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		s, err := testenv.StartNATS(dir)
		if err != nil {
			return err
		}
		defer s.Shutdown()
		fmt.Println(s.ClientURL())
	case "kafka":
		c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "bench."+gateway+".r"))
		if err != nil {
			return err
		}
		defer c.Close()
		fmt.Println(strings.Join(c.ListenAddrs(), ","))
	default:
		return fmt.Errorf("unknown upstream %q", kind)
	}
	_, err := io.Copy(io.Discard, os.Stdin)
	return err
}

// startUpstream runs this command as the upstream's process and returns its
// address and a function that stops it.
func startUpstream(kind string) (string, func(), error) {
	exe, err := os.Executable()
	if err != nil {
		return "", nil, err
	}
	cmd := exec.Command(exe, "-serve", kind)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return "", nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, err
	}
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop := func() { stdin.Close(); cmd.Wait() }
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		stop()
		return "", nil, fmt.Errorf("upstream %s: %w", kind, err)
	}
	return strings.TrimSpace(line), stop, nil
}

// payload is a rule output whose envelope is 200 bytes.
var payload = func() []byte {
	const head, tail = `{"rule":"r","ts":"2026-11-25T09:01:00Z","values":{"avg_t":41.2,"max_t":55.0,"n":600},"pad":"`, `"}`
	probe := uplink.AppendEnvelope(nil, gateway, &buffer.Entry{Seq: 100000, Payload: []byte(head + tail)})
	return []byte(head + strings.Repeat("x", max(200-len(probe), 0)) + tail)
}()

// entry returns the record of seq.
func entry(seq uint64) buffer.Entry {
	return buffer.Entry{Seq: seq, Rule: "r", Key: keys[seq%uint64(len(keys))], Payload: payload}
}

// keys are the records' group keys: 100 devices.
var keys = func() (k [100]string) {
	for i := range k {
		k[i] = fmt.Sprintf("dev-%d", i)
	}
	return k
}()

// forwarderBatch returns how many records the forwarder's default bounds
// put in a batch, counting bytes as it does.
func forwarderBatch() int {
	n, bytes := 0, 0
	for seq := uint64(100000); n < pipeline.DefaultBatchRecords; seq++ {
		e := entry(seq)
		if bytes += pipeline.EntrySize(&e); bytes > pipeline.DefaultBatchBytes {
			break
		}
		n++
	}
	return n
}

// batchSource hands out the records as Deliver batches of 200-byte
// envelopes, one at a time in the same memory, as the forwarder reads them
// from the buffer. Holding all of them at once (400,000 entries) had the
// sending process's garbage collector mark tens of megabytes at every
// cycle, a cost the gateway does not have.
type batchSource struct {
	left int
	seq  uint64
	buf  []buffer.Entry
}

func newBatchSource(records, size int) *batchSource {
	return &batchSource{left: records, seq: 1, buf: make([]buffer.Entry, size)}
}

// next returns the next batch, valid until the next call, or nil.
func (s *batchSource) next() []buffer.Entry {
	b := s.buf[:min(len(s.buf), s.left)]
	for i := range b {
		b[i] = entry(s.seq)
		s.seq++
	}
	s.left -= len(b)
	if len(b) == 0 {
		return nil
	}
	return b
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// measure delivers records in batches of size (after one warm-up batch
// that is not counted) and returns records/s and CPU µs per record.
func measure(deliver func([]buffer.Entry) error, records, size int) (float64, float64, error) {
	src := newBatchSource(records, size)
	if err := deliver(src.next()); err != nil {
		return 0, 0, fmt.Errorf("warm-up: %w", err)
	}
	n := 0
	cpu0, t0 := cpuTime(), time.Now()
	for b := src.next(); b != nil; b = src.next() {
		if err := deliver(b); err != nil {
			return 0, 0, err
		}
		n += len(b)
	}
	wall, cpu := time.Since(t0), cpuTime()-cpu0
	return float64(n) / wall.Seconds(), float64(cpu.Microseconds()) / float64(n), nil
}

// deliverer returns up's Deliver for measure.
func deliverer(up uplink.Uplink) func([]buffer.Entry) error {
	return func(b []buffer.Entry) error { return up.Deliver(context.Background(), b) }
}

// packRecords is the envelopes per message of the packed NATS figure.
const packRecords = 100

// natsStream is an embedded nats-server (in a child process) with the
// file-backed stream BENCH on bench.>, and a connection that reads it.
type natsStream struct {
	url   string
	st    jetstream.Stream
	close func()
}

// startStream starts the server and creates the stream, allowing fast
// batches or not.
func startStream(batched bool) (*natsStream, error) {
	url, stop, err := startUpstream("nats")
	if err != nil {
		return nil, err
	}
	ns, err := openStream(url, batched)
	if err != nil {
		stop()
		return nil, err
	}
	closeConn := ns.close
	ns.close = func() { closeConn(); stop() }
	return ns, nil
}

// openStream connects to the server at url and creates the stream; close
// closes the connection.
func openStream(url string, batched bool) (*natsStream, error) {
	nc, err := nats.Connect(url)
	if err != nil {
		return nil, err
	}
	ns := &natsStream{url: url, close: nc.Close}
	js, err := jetstream.New(nc)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ns.st, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "BENCH", Subjects: []string{"bench.>"}, Storage: jetstream.FileStorage, AllowBatchPublish: batched})
	}
	if err != nil {
		nc.Close()
		return nil, err
	}
	return ns, nil
}

// check returns an error unless the stream holds want messages.
func (ns *natsStream) check(want uint64) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := ns.st.Info(ctx)
	if err != nil {
		return err
	}
	if got := info.State.Msgs; got != want {
		return fmt.Errorf("stream holds %d messages, want %d", got, want)
	}
	return nil
}

// benchNATS delivers records in batches of size to a stream that allows
// fast batches or not.
func benchNATS(records, size int, pack uplink.Pack, batched bool) (float64, float64, error) {
	ns, err := startStream(batched)
	if err != nil {
		return 0, 0, err
	}
	defer ns.close()
	subject, err := uplink.ParseSubject("bench.{gateway}.{rule}")
	if err != nil {
		return 0, 0, err
	}
	up, err := uplink.NewNATS("bench", ns.url, uplink.WithGateway(gateway), uplink.WithSubject(subject),
		uplink.WithLogger(slog.New(slog.DiscardHandler)), uplink.WithPack(pack))
	if err != nil {
		return 0, 0, err
	}
	defer up.Close()
	rps, cpu, err := measure(deliverer(up), records+size, size)
	if err != nil {
		return 0, 0, err
	}
	want := uint64(records + size)
	if pack.MaxRecords > 1 {
		want = uint64((records/size + 1) * ((size + pack.MaxRecords - 1) / pack.MaxRecords)) // records is a multiple of size
	}
	if err := ns.check(want); err != nil {
		return 0, 0, err
	}
	if got := up.Published.Load(); got != uint64(records+size) {
		return 0, 0, fmt.Errorf("%d records acknowledged, want %d", got, records+size)
	}
	if got, want := up.FastBatches.Load(), uint64(records/size+1); batched && got != want {
		return 0, 0, fmt.Errorf("%d fast batches, want %d", got, want)
	}
	return rps, cpu, nil
}

// benchNATSFloor delivers records in batches of size from the bare
// publisher of floor.go to a stream that allows fast batches.
func benchNATSFloor(records, size int) (float64, float64, error) {
	ns, err := startStream(true)
	if err != nil {
		return 0, 0, err
	}
	defer ns.close()
	p, err := dialFloor(ns.url)
	if err != nil {
		return 0, 0, err
	}
	defer p.conn.Close()
	subject := "bench." + gateway + ".r"
	rps, cpu, err := measure(func(b []buffer.Entry) error { return p.deliver(b, subject) }, records+size, size)
	if err != nil {
		return 0, 0, err
	}
	if err := ns.check(uint64(records + size)); err != nil {
		return 0, 0, err
	}
	return rps, cpu, nil
}

func benchKafka(records, size int) (float64, float64, error) {
	addrs, stop, err := startUpstream("kafka")
	if err != nil {
		return 0, 0, err
	}
	defer stop()
	topic, err := uplink.ParseTopic("bench.{gateway}.{rule}")
	if err != nil {
		return 0, 0, err
	}
	up, err := uplink.NewKafka("bench", strings.Split(addrs, ","), uplink.WithKafkaGateway(gateway),
		uplink.WithTopic(topic), uplink.WithKafkaLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		return 0, 0, err
	}
	defer up.Close()
	rps, cpu, err := measure(deliverer(up), records+size, size)
	if err != nil {
		return 0, 0, err
	}
	if got := up.Published.Load(); got != uint64(records+size) {
		return 0, 0, fmt.Errorf("%d records acknowledged, want %d", got, records+size)
	}
	return rps, cpu, nil
}
