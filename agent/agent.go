package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sluiceio/sluice/agent/broker"
	"github.com/sluiceio/sluice/agent/config"
	"github.com/sluiceio/sluice/agent/ingest"
	"github.com/sluiceio/sluice/agent/pipeline"
	"github.com/sluiceio/sluice/buffer"
	"github.com/sluiceio/sluice/rules"
	"github.com/sluiceio/sluice/uplink"
)

// runAgent wires the config into sources, the pipeline, the buffer and the
// uplinks, and runs them until ctx ends. Shutdown order keeps the delivery
// guarantee: sources stop handing out messages, the pipeline commits what it
// holds and acks it, then the MQTT clients disconnect, the forwarders stop and
// the buffer closes.
func runAgent(ctx context.Context, cfg *config.Config, log *slog.Logger, hooks agentHooks) error {
	applyLimits(cfg.Limits, log)
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	if cfg.Broker != nil {
		b, err := broker.Start(cfg.Broker.Listen, log)
		if err != nil {
			return err
		}
		defer b.Close()
		log.Info("built-in broker listening", "addr", cfg.Broker.Listen)
	}

	uplinkNames := make([]string, len(cfg.Uplinks))
	for i, u := range cfg.Uplinks {
		uplinkNames[i] = u.Name
	}
	policy, _ := buffer.ParsePolicy(cfg.Buffer.Policy) // validated
	buf, err := buffer.Open(cfg.Buffer.Path, buffer.Options{
		Uplinks:    uplinkNames,
		NoSync:     cfg.Buffer.NoSync,
		MaxBytes:   int64(cfg.Buffer.MaxBytes),
		MaxRecords: cfg.Buffer.MaxRecords,
		MaxAge:     cfg.Buffer.MaxAge,
		Policy:     policy,
		Logger:     log,
	})
	if err != nil {
		return err
	}
	defer buf.Close()
	if buf.MovedAside != "" {
		log.Error("started with a fresh buffer: the old file was damaged", "moved_to", buf.MovedAside)
	}
	go compactLoop(ctx, buf, log)

	inputs := make([]*pipeline.Input, len(cfg.Inputs))
	inputIndex := map[string]int{}
	for i, in := range cfg.Inputs {
		inputs[i] = &pipeline.Input{Name: in.Name, MaxPayload: in.MQTT.MaxPayload}
		inputIndex[in.Name] = i
	}
	var rs []*pipeline.Rule
	for _, r := range cfg.Rules {
		plan, err := rules.Compile(r.Spec())
		if err != nil {
			return fmt.Errorf("rule %s: %w", r.Name, err) // validated already
		}
		rs = append(rs, &pipeline.Rule{Plan: plan, Input: inputIndex[r.From], To: r.To})
	}
	p := pipeline.New(buf, inputs, rs, pipeline.Options{
		Gateway:            cfg.Gateway,
		Tags:               tagFields(cfg.Tags),
		CommitInterval:     cfg.Buffer.CommitInterval,
		CommitMaxRecords:   cfg.Buffer.CommitMaxRecords,
		CheckpointInterval: cfg.Buffer.CheckpointInterval,
		Logger:             log,
	})
	if err := p.Restore(); err != nil {
		return err
	}

	// Forwarders first: a backlog from the last run starts draining at once.
	fwdCtx, stopForwarders := context.WithCancel(context.Background())
	defer stopForwarders()
	var fwdWG sync.WaitGroup
	for _, u := range cfg.Uplinks {
		up, ok := hooks.uplinks[u.Name]
		if !ok {
			var err error
			if up, err = newUplink(cfg, u, log); err != nil {
				return err
			}
		}
		defer up.Close()
		f := &pipeline.Forwarder{Buffer: buf, Uplink: up, BatchSize: u.NATS.BatchSize, Logger: log}
		fwdWG.Add(1)
		go func() {
			defer fwdWG.Done()
			if err := f.Run(fwdCtx); err != nil {
				log.Error("forwarder stopped", "uplink", u.Name, "err", err)
			}
		}()
	}

	pipeCtx, stopPipeline := context.WithCancel(context.Background())
	defer stopPipeline()
	pipeDone := make(chan error, 1)
	go func() { pipeDone <- p.Run(pipeCtx) }()

	srcCtx, stopSources := context.WithCancel(ctx)
	defer stopSources()
	var sources []*ingest.MQTT
	for i, in := range cfg.Inputs {
		m := in.MQTT
		password, err := secret(m.PasswordFile, m.PasswordEnv)
		if err != nil {
			return fmt.Errorf("input %s: %w", in.Name, err)
		}
		src := ingest.NewMQTT(ingest.MQTTOptions{
			Input: i, URL: m.URL, ClientID: m.ClientID, Topics: m.Topics, QoS: byte(*m.QoS),
			Username: m.Username, Password: password, KeepAlive: m.KeepAlive,
			ReadCoalesce: *m.ReadCoalesce, MaxPayload: m.MaxPayload, Logger: log,
		})
		src.SessionPresent = func(present bool) { p.SessionPresent(i, present) }
		if err := src.Start(srcCtx, p.In()); err != nil {
			log.Warn("input not connected yet; retrying in the background", "input", in.Name, "err", err)
		}
		sources = append(sources, src)
	}
	go func() {
		for _, s := range sources {
			select {
			case <-s.Subscribed():
			case <-ctx.Done():
				return
			}
		}
		log.Info("sluice ready: every input subscribed")
		if err := sdNotify("READY=1"); err != nil {
			log.Warn("systemd notify failed", "err", err)
		}
		if hooks.ready != nil {
			hooks.ready()
		}
		err := watchdog(ctx, watchdogInterval(), func() error {
			if since := time.Since(p.LastTick()); since > 30*time.Second {
				return fmt.Errorf("%w: no tick for %s", errStalled, since.Round(time.Second))
			}
			return nil
		})
		if err != nil {
			log.Error("systemd watchdog stopped", "err", err)
		}
	}()
	log.Info("sluice running", "version", version, "gateway", cfg.Gateway, "inputs", len(cfg.Inputs), "rules", len(cfg.Rules), "uplinks", len(cfg.Uplinks), "buffer", cfg.Buffer.Path)

	<-ctx.Done()
	log.Info("stopping")
	sdNotify("STOPPING=1")
	stopSources()
	stopPipeline()
	err = <-pipeDone
	for _, s := range sources {
		s.Close()
	}
	drainUplinks(buf, cfg.ShutdownTimeout, log)
	stopForwarders()
	fwdWG.Wait()
	for i, in := range inputs {
		log.Info("input totals", "input", in.Name, "received", sources[i].Received.Load(), "messages", in.Stats.Messages.Load(),
			"dead_letters", in.Stats.DeadLetters.Load(), "duplicates", in.Stats.Duplicates.Load())
	}
	for _, r := range rs {
		st := r.Plan.Stats
		log.Info("rule totals", "rule", r.Plan.Name(), "processed", st.Processed, "filtered", st.Filtered, "late", st.Late, "groups_dropped", st.GroupsDropped, "emitted", st.Emitted)
	}
	log.Info("buffer totals", "commits", p.Stats.Commits.Load(), "outputs", p.Stats.Outputs.Load(), "records", buf.Records(), "last_seq", buf.LastSeq())
	return err
}

// drainUplinks gives the forwarders up to timeout to deliver what is
// buffered before the agent exits. What they do not deliver stays in the
// buffer for the next start: nothing is lost either way.
func drainUplinks(buf *buffer.Buffer, timeout time.Duration, log *slog.Logger) {
	deadline := time.Now().Add(timeout)
	for buf.Records() > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond) // shutdown only; the buffer has no "empty" event
	}
	if n := buf.Records(); n > 0 {
		log.Info("outputs left in the buffer for the next start", "records", n)
	}
}

// agentHooks let callers other than `sluice run` take part in a run.
type agentHooks struct {
	uplinks map[string]uplink.Uplink // used instead of building these from the config
	ready   func()                   // called once every input is subscribed
}

// compactLoop gives the file back to the disk after a large backlog drained.
func compactLoop(ctx context.Context, buf *buffer.Buffer, log *slog.Logger) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := buf.MaybeCompact(); err != nil {
				log.Error("buffer compaction failed", "err", err)
			}
		}
	}
}

// secret reads a secret from a file or an environment variable; secrets are
// never written in the config itself.
func secret(file, env string) (string, error) {
	switch {
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("read secret: %w", err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	case env != "":
		v, ok := os.LookupEnv(env)
		if !ok {
			return "", fmt.Errorf("secret: environment variable %s is not set", env)
		}
		return v, nil
	}
	return "", nil
}

func tagFields(tags map[string]string) []rules.Field {
	names := make([]string, 0, len(tags))
	for k := range tags {
		names = append(names, k)
	}
	sort.Strings(names)
	fs := make([]rules.Field, len(names))
	for i, k := range names {
		fs[i] = rules.Field{Name: k, Value: rules.String(tags[k])}
	}
	return fs
}

// applyLimits sets the soft memory limit from the config unless GOMEMLIMIT
// is set in the environment. GOMAXPROCS needs nothing: Go follows the
// cgroup CPU limit by itself since 1.25.
func applyLimits(l config.Limits, log *slog.Logger) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	debug.SetMemoryLimit(int64(l.Memory))
	log.Debug("memory limit", "bytes", int64(l.Memory))
}
