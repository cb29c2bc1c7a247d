package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/sluiceio/sluice/agent/api"
	"github.com/sluiceio/sluice/agent/broker"
	"github.com/sluiceio/sluice/agent/config"
	"github.com/sluiceio/sluice/agent/exepages"
	"github.com/sluiceio/sluice/agent/procs"
	"github.com/sluiceio/sluice/buffer"
	"github.com/sluiceio/sluice/rules"
	"github.com/sluiceio/sluice/uplink"
)

// runAgent runs the agent on cfg until ctx ends: the process-wide parts (memory
// limit, data dir, built-in broker) and a generation of the pipeline, which
// Apply replaces when the config changes.
func runAgent(ctx context.Context, cfg *config.Config, log *slog.Logger, hooks agentHooks) error {
	local := cfg
	cfg = bootConfig(local, log)
	limits := &limiter{ctx: ctx, log: log}
	limits.apply(cfg.Limits)
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
	a := &agent{log: log, hooks: hooks, started: time.Now(), limits: limits}
	if !cfg.API.Disabled {
		srv, err := newAPIServer(cfg.API, cfg.Gateway, log, func() api.Status {
			if g := a.current(); g != nil && g.status != nil {
				return g.status.Status()
			}
			return api.Status{Gateway: cfg.Gateway, Time: time.Now()}
		})
		if err != nil {
			return err
		}
		a.api = srv
	}
	if err := a.start(cfg); err != nil {
		return err
	}
	if a.api != nil {
		if err := a.api.Start(ctx); err != nil {
			a.stop()
			return err
		}
		defer a.api.Close()
		log.Info("local API listening", "addr", a.api.Addr().String())
		if hooks.apiAddr != nil {
			hooks.apiAddr(a.api.Addr())
		}
	}
	if err := startControl(ctx, a, local, log); err != nil {
		a.stop()
		return err
	}
	go a.compactLoop(ctx)
	go a.notifySystemd(ctx)
	log.Info("sluice running", "version", version, "gateway", cfg.Gateway, "inputs", len(cfg.Inputs), "rules", len(cfg.Rules), "uplinks", len(cfg.Uplinks), "buffer", cfg.Buffer.Path)

	<-ctx.Done()
	log.Info("stopping")
	sdNotify("STOPPING=1")
	return a.stop()
}

// releaseStartupPages unmaps the executable's pages that start-up mapped
// (see package exepages), unless SLUICE_KEEP_EXE_PAGES is set.
func releaseStartupPages(log *slog.Logger, done func(exepages.Stats, error)) {
	if os.Getenv("SLUICE_KEEP_EXE_PAGES") != "" {
		return
	}
	st, err := exepages.Release()
	if done != nil {
		done(st, err)
	}
	if err != nil {
		log.Warn("start-up pages not released", "err", err)
		return
	}
	log.Info("start-up pages released", "mappings", st.Mappings, "skipped", st.Skipped, "rss_before_kib", st.RSSFrom>>10, "rss_after_kib", st.RSSTo>>10)
}

// notifySystemd says READY=1 once the first generation's inputs subscribed,
// then pets the watchdog while the current pipeline ticks.
func (a *agent) notifySystemd(ctx context.Context) {
	select {
	case <-a.current().ready:
	case <-ctx.Done():
		return
	}
	a.log.Info("sluice ready: every input subscribed")
	releaseStartupPages(a.log, a.hooks.released)
	if err := sdNotify("READY=1"); err != nil {
		a.log.Warn("systemd notify failed", "err", err)
	}
	if a.hooks.ready != nil {
		a.hooks.ready()
	}
	err := watchdog(ctx, watchdogInterval(), func() error {
		if since := time.Since(a.current().p.LastTick()); since > 30*time.Second {
			return fmt.Errorf("%w: no tick for %s", errStalled, since.Round(time.Second))
		}
		return nil
	})
	if err != nil {
		a.log.Error("systemd watchdog stopped", "err", err)
	}
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
	configPath string                      // the local config file, for reload-config
	uplinks    map[string]uplink.Uplink    // used instead of building these from the config
	ready      func()                      // called once every input is subscribed
	released   func(exepages.Stats, error) // called after the start-up pages were released (or not), before ready
	apiAddr    func(net.Addr)              // called once the local API listens
}

// compactLoop gives the file back to the disk after a large backlog drained.
func (a *agent) compactLoop(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := a.current().buf.MaybeCompact(); err != nil {
				a.log.Error("buffer compaction failed", "err", err)
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

// limiter applies the config's limits: the soft memory limit and
// GOMAXPROCS, unless GOMEMLIMIT and GOMAXPROCS are set in the environment.
// With limits.procs 0 a procs.Governor sizes GOMAXPROCS until ctx ends,
// between 1 and the runtime's default (the CPUs, or the cgroup's CPU
// limit). apply runs at start and again for each config applied.
type limiter struct {
	ctx       context.Context
	log       *slog.Logger
	cur       *config.Limits
	stop      func() // ends the running Governor and waits for it; nil when none
	governors int    // Governors started, for tests
}

func (l *limiter) apply(c config.Limits) {
	prev := l.cur
	if prev != nil && *prev == c {
		return
	}
	l.cur = &c
	if os.Getenv("GOMEMLIMIT") == "" && (prev == nil || prev.Memory != c.Memory) {
		debug.SetMemoryLimit(int64(c.Memory))
		l.log.Debug("memory limit", "bytes", int64(c.Memory))
	}
	// A running Governor keeps its state (a change of memory alone would
	// otherwise take a busy agent back to one P for a second).
	if envProcs() || prev != nil && prev.Procs == c.Procs {
		return
	}
	if l.stop != nil {
		l.stop()
		l.stop = nil
	}
	if c.Procs > 0 {
		runtime.GOMAXPROCS(c.Procs)
		return
	}
	runtime.SetDefaultGOMAXPROCS()
	ctx, cancel := context.WithCancel(l.ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		procs.New(l.log).Run(ctx)
	}()
	l.stop = func() { cancel(); <-done }
	l.governors++
}

// envProcs reports whether GOMAXPROCS in the environment sets the Ps: the
// runtime ignores a value that is not a positive number, and so do we.
func envProcs() bool {
	n, err := strconv.ParseInt(os.Getenv("GOMAXPROCS"), 10, 32) // as the runtime parses it
	return err == nil && n > 0
}
