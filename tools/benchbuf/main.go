// Command benchbuf measures the store-and-forward buffer on this machine's
// disk, with fsync on, and prints BENCH lines:
//
//	buffer_append_durable_rps     records/s committed in group commits
//	buffer_drain_rps              records/s read, acked and deleted
//	buffer_commit_p99_ms          99th percentile of one group commit
//	buffer_disk_bytes_per_record  bytes written to disk (/proc/self/io) per
//	                              record appended and drained
//
// Records are 200-byte payloads committed 2,000 per transaction, as the
// agent's group commit gathers them under load.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/sluiceio/sluice/buffer"
	"github.com/sluiceio/sluice/internal/benchutil"
)

func main() {
	records := flag.Int("records", 600_000, "records to append and drain")
	batch := flag.Int("batch", 2000, "records per commit")
	dir := flag.String("dir", "", "directory for the buffer file (default: a temp dir)")
	flag.Parse()
	log.SetFlags(0)
	if *dir == "" {
		d, err := os.MkdirTemp("", "sluice-benchbuf-")
		if err != nil {
			log.Fatal(err)
		}
		defer os.RemoveAll(d)
		*dir = d
	}
	b, err := buffer.Open(filepath.Join(*dir, "buf.db"), buffer.Options{Uplinks: []string{"u"}})
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()

	payload := []byte(strings.Repeat("x", 200))
	es := make([]buffer.Entry, *batch)
	written0 := writeBytes()
	var lat []time.Duration
	start := time.Now()
	for n := 0; n < *records; n += *batch {
		for i := range es {
			es[i] = buffer.Entry{Rule: "bench", Key: "dev-1", Payload: payload}
		}
		t := time.Now()
		if err := b.Commit(&buffer.Commit{Entries: es}); err != nil {
			log.Fatal(err)
		}
		lat = append(lat, time.Since(t))
	}
	appendTook := time.Since(start)

	start = time.Now()
	var pos buffer.Position
	var got []buffer.Entry
	drained := 0
	for {
		var next buffer.Position
		got, next, err = b.Read("u", pos, *batch, got[:0])
		if err != nil {
			log.Fatal(err)
		}
		if len(got) == 0 {
			break
		}
		if err := b.Ack("u", next); err != nil {
			log.Fatal(err)
		}
		pos = next
		drained += len(got)
	}
	drainTook := time.Since(start)
	written := writeBytes() - written0
	if drained != *records {
		log.Fatalf("drained %d of %d records", drained, *records)
	}
	slices.Sort(lat)
	p99 := lat[len(lat)*99/100]
	fmt.Printf("BENCH buffer_append_durable_rps %.0f records/s\n", float64(*records)/appendTook.Seconds())
	fmt.Printf("BENCH buffer_drain_rps %.0f records/s\n", float64(*records)/drainTook.Seconds())
	fmt.Printf("BENCH buffer_commit_p99_ms %.2f ms\n", float64(p99.Microseconds())/1000)
	fmt.Printf("BENCH buffer_disk_bytes_per_record %.0f bytes\n", float64(written)/float64(*records))
}

// writeBytes returns the bytes this process caused to be written to storage.
func writeBytes() float64 {
	n, err := benchutil.WrittenBytes(os.Getpid())
	if err != nil {
		log.Fatal(err)
	}
	return n
}
