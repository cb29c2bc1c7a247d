// Command benchuplink measures the uplinks' delivery throughput and CPU cost
// on this machine and prints BENCH lines:
//
//	uplink_nats_jetstream_rps          records/s acknowledged by JetStream, one
//	                                   message per record, fast batches (the
//	                                   stream allows them)
//	uplink_nats_jetstream_cpu_us_per_msg  CPU of the sending process per record
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

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sluiceio/sluice/agent/pipeline"
	"github.com/sluiceio/sluice/buffer"
	"github.com/sluiceio/sluice/uplink"
)

const gateway = "gw-bench"

func main() {
	records := flag.Int("records", 400_000, "records to deliver per uplink")
	batch := flag.Int("batch", 0, "records per Deliver call (default: as many as the forwarder's default bounds take)")
	only := flag.String("only", "", "run one uplink only: nats or kafka")
	serve := flag.String("serve", "", "internal: run the upstream (nats or kafka) in this process")
	cpuprofile := flag.String("cpuprofile", "", "write the sending side's CPU profile to this file")
	flag.Parse()
	log.SetFlags(0)
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
		rps, cpu, err := benchNATS(*records, *batch, uplink.Pack{}, true)
		if err != nil {
			log.Fatalf("nats: %v", err)
		}
		fmt.Printf("BENCH uplink_nats_jetstream_rps %.0f records/s\n", rps)
		fmt.Printf("BENCH uplink_nats_jetstream_cpu_us_per_msg %.2f us\n", cpu)
		rps, cpu, err = benchNATS(*records, *batch, uplink.Pack{}, false)
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
		s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true})
		if err != nil {
			return err
		}
		go s.Start()
		if !s.ReadyForConnections(10 * time.Second) {
			return fmt.Errorf("nats-server not ready")
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
	return buffer.Entry{Seq: seq, Rule: "r", Key: fmt.Sprintf("dev-%d", seq%100), Payload: payload}
}

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

// batches returns the records as Deliver batches of 200-byte envelopes.
func batches(records, size int) [][]buffer.Entry {
	var out [][]buffer.Entry
	seq := uint64(1)
	for n := 0; n < records; n += size {
		b := make([]buffer.Entry, min(size, records-n))
		for i := range b {
			b[i] = entry(seq)
			seq++
		}
		out = append(out, b)
	}
	return out
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// measure delivers every batch (after one warm-up batch that is not
// counted) and returns records/s and CPU µs per record.
func measure(up uplink.Uplink, bs [][]buffer.Entry) (float64, float64, error) {
	ctx := context.Background()
	if err := up.Deliver(ctx, bs[0]); err != nil {
		return 0, 0, fmt.Errorf("warm-up: %w", err)
	}
	n := 0
	cpu0, t0 := cpuTime(), time.Now()
	for _, b := range bs[1:] {
		if err := up.Deliver(ctx, b); err != nil {
			return 0, 0, err
		}
		n += len(b)
	}
	wall, cpu := time.Since(t0), cpuTime()-cpu0
	return float64(n) / wall.Seconds(), float64(cpu.Microseconds()) / float64(n), nil
}

// packRecords is the envelopes per message of the packed NATS figure.
const packRecords = 100

// benchNATS delivers records in batches of size to a stream that allows
// fast batches or not.
func benchNATS(records, size int, pack uplink.Pack, batched bool) (float64, float64, error) {
	url, stop, err := startUpstream("nats")
	if err != nil {
		return 0, 0, err
	}
	defer stop()
	nc, err := nats.Connect(url)
	if err != nil {
		return 0, 0, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "BENCH", Subjects: []string{"bench.>"}, Storage: jetstream.FileStorage, AllowBatchPublish: batched}); err != nil {
		return 0, 0, err
	}
	subject, err := uplink.ParseSubject("bench.{gateway}.{rule}")
	if err != nil {
		return 0, 0, err
	}
	up, err := uplink.NewNATS("bench", url, uplink.WithGateway(gateway), uplink.WithSubject(subject),
		uplink.WithLogger(slog.New(slog.DiscardHandler)), uplink.WithPack(pack))
	if err != nil {
		return 0, 0, err
	}
	defer up.Close()
	rps, cpu, err := measure(up, batches(records+size, size))
	if err != nil {
		return 0, 0, err
	}
	// The run may have taken longer than the set-up's deadline.
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, "BENCH")
	if err != nil {
		return 0, 0, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0, 0, err
	}
	want := uint64(records + size)
	if pack.MaxRecords > 1 {
		want = uint64((records/size + 1) * ((size + pack.MaxRecords - 1) / pack.MaxRecords)) // records is a multiple of size
	}
	if got := info.State.Msgs; got != want {
		return 0, 0, fmt.Errorf("stream holds %d messages, want %d", got, want)
	}
	if got := up.Published.Load(); got != uint64(records+size) {
		return 0, 0, fmt.Errorf("%d records acknowledged, want %d", got, records+size)
	}
	if got, want := up.FastBatches.Load(), uint64(records/size+1); batched && got != want {
		return 0, 0, fmt.Errorf("%d fast batches, want %d", got, want)
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
	rps, cpu, err := measure(up, batches(records+size, size))
	if err != nil {
		return 0, 0, err
	}
	if got := up.Published.Load(); got != uint64(records+size) {
		return 0, 0, fmt.Errorf("%d records acknowledged, want %d", got, records+size)
	}
	return rps, cpu, nil
}
