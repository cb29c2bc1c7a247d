package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluiceio/sluice/internal/testenv"
)

// bench is one run of the harness: the binaries, a work directory, the
// embedded nats-server every run forwards to, and where figures go.
type bench struct {
	opts options
	self string // this binary, re-run as the floor subscriber
	dir  string
	clk  clock
	ns   *server.Server
	nc   *nats.Conn
	js   jetstream.JetStream
	out  io.Writer // BENCH lines
	log  *log.Logger
}

func newBench(opts options, out io.Writer, logger *log.Logger) (*bench, error) {
	b := &bench{opts: opts, out: out, log: logger}
	var err error
	for _, p := range []*string{&b.opts.sluice, &b.opts.sim} {
		if *p, err = filepath.Abs(*p); err != nil {
			return nil, err
		}
		if _, err := os.Stat(*p); err != nil {
			return nil, fmt.Errorf("%w (make build makes it)", err)
		}
	}
	if b.self, err = os.Executable(); err != nil {
		return nil, fmt.Errorf("find own binary for the floor subscriber: %w", err)
	}
	if _, err := testenv.MosquittoPath(); err != nil {
		return nil, err
	}
	b.clk = newClock(logger)
	if b.dir, err = os.MkdirTemp("", "sluice-bench-"); err != nil {
		return nil, fmt.Errorf("work directory: %w", err)
	}
	if err := b.startNATS(); err != nil {
		b.close()
		return nil, err
	}
	return b, nil
}

func (b *bench) startNATS() error {
	var err error
	if b.ns, err = testenv.StartNATS(filepath.Join(b.dir, "jetstream")); err != nil {
		return err
	}
	if b.nc, err = nats.Connect(b.ns.ClientURL()); err != nil {
		return fmt.Errorf("connect to nats-server: %w", err)
	}
	if b.js, err = jetstream.New(b.nc); err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	return nil
}

// close stops nats-server and removes the work directory (unless --keep).
func (b *bench) close() {
	if b.nc != nil {
		b.nc.Close()
	}
	if b.ns != nil {
		b.ns.Shutdown()
		b.ns.WaitForShutdown()
	}
	if b.opts.keep {
		b.log.Printf("work directory kept: %s", b.dir)
		return
	}
	os.RemoveAll(b.dir)
}

// runAll measures every figure in turn, printing each as soon as it is
// known. A figure that fails is reported on stderr and the next one is
// tried; it returns how many failed.
func (b *bench) runAll(ctx context.Context) (failed int) {
	short := map[string]string{"idle": "idle", "5k": "5k", "w1a": "w1a", "20k": "20k", "max rate": "max", "simulator ceiling": "sim", "binary size": "size"}
	try := func(what string, f func(context.Context) error) {
		if ctx.Err() != nil || (len(b.opts.only) > 0 && !b.opts.only[short[what]]) {
			return
		}
		if err := f(ctx); err != nil && ctx.Err() == nil {
			b.log.Printf("%s: %v", what, err)
			failed++
		}
	}
	try("idle", b.idle)
	var passed20k bool
	try("5k", b.w1At5k)
	try("w1a", b.w1aAt5k)
	try("20k", func(ctx context.Context) (err error) {
		passed20k, err = b.w1At20k(ctx)
		return err
	})
	try("max rate", func(ctx context.Context) error { return b.maxRate(ctx, passed20k) })
	try("simulator ceiling", b.simMax)
	try("binary size", b.binarySize)
	return failed
}

// report prints one figure.
func (b *bench) report(name string, value float64, decimals int, unit string) {
	fmt.Fprintf(b.out, "BENCH %s %.*f %s\n", name, decimals, value, unit)
}

// runDir makes a fresh directory for one run.
func (b *bench) runDir(label string) (string, error) {
	d := filepath.Join(b.dir, label)
	if err := os.MkdirAll(d, 0o755); err != nil {
		return "", fmt.Errorf("run directory: %w", err)
	}
	return d, nil
}
