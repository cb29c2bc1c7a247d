// Command sluice is the Sluice edge gateway agent: it ingests local telemetry
// over MQTT, applies rules, keeps every result in a durable buffer and
// forwards it upstream to NATS / JetStream.
//
//	sluice run --config sluice.yaml
//	sluice validate --config sluice.yaml
//	sluice version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/sluiceio/sluice/agent/config"
	"github.com/sluiceio/sluice/rules/ml/nab"
)

// version is stamped at build time: -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage: sluice <command> [flags]

commands:
  run --config FILE        run the agent
  validate --config FILE   check a config; exit 1 listing each error's line and field
  ctl keygen|sign|push|cmd|watch   fleet operator's tool (sluice ctl help)
  test-rule --rule FILE --input records.jsonl
                           run rules over JSON lines and print their outputs
  selftest                 run the whole pipeline on this machine with a known load; exit 0 when it is exact
  nab --data DIR [--windows FILE]
                           score anomaly_score on NAB-format series (NAB's standard profile)
  version                  print the version
`

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "version", "--version", "-v":
		fmt.Fprintf(stdout, "sluice %s\n", version)
		return 0
	case "validate":
		path, ok := configFlag("validate", args, stderr)
		if !ok {
			return 2
		}
		if _, err := config.Load(path); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		fmt.Fprintf(stdout, "%s: ok\n", path)
		return 0
	case "run":
		path, ok := configFlag("run", args, stderr)
		if !ok {
			return 2
		}
		cfg, err := config.Load(path)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		log := newLogger(cfg.Log, stderr)
		stopProfile, err := startProfile()
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		defer stopProfile()
		ctx, stop := context.WithCancel(context.Background())
		defer stop()
		// The first signal stops the agent cleanly; a second exits at once.
		// Nothing is lost either way: outputs are committed before inputs are
		// released, and what was not released is delivered again.
		sigs := make(chan os.Signal, 2)
		signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
		go func() {
			<-sigs
			stop()
			<-sigs
			log.Warn("second signal: exiting now")
			os.Exit(130)
		}()
		if err := runAgent(ctx, cfg, log, agentHooks{configPath: path}); err != nil && !errors.Is(err, context.Canceled) {
			log.Error("agent stopped", "err", err)
			return 1
		}
		return 0
	case "ctl":
		return ctlMain(args, stdout, stderr)
	case "test-rule":
		return testRule(args, stdout, stderr)
	case "nab":
		return nab.Main(args, stdout, stderr)
	case "selftest":
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return selftest(ctx, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "sluice: unknown command %q\n\n%s", cmd, usage)
	return 2
}

func configFlag(name string, args []string, stderr io.Writer) (string, bool) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "sluice.yaml", "config file (YAML)")
	if err := fs.Parse(args); err != nil {
		return "", false
	}
	return *path, true
}

func newLogger(c config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level)) // validated; empty means info
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
