package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluiceio/sluice/agent/api"
	"github.com/sluiceio/sluice/agent/config"
	"github.com/sluiceio/sluice/agent/ingest"
	"github.com/sluiceio/sluice/agent/pipeline"
	"github.com/sluiceio/sluice/buffer"
	"github.com/sluiceio/sluice/rules"
	"github.com/sluiceio/sluice/uplink"
)

// agent owns the running generation and replaces it when the config
// changes. Its methods are safe for concurrent use (the control plane calls
// Apply and Flush from its own goroutine).
type agent struct {
	log     *slog.Logger
	hooks   agentHooks
	api     *api.Server // nil when the local API is off
	started time.Time

	mu  sync.Mutex // serialises start, Apply and stop
	gen atomic.Pointer[generation]
}

func (a *agent) current() *generation { return a.gen.Load() }

// setCurrent makes g the running generation and points the local API's
// POST /ingest/ at its HTTP inputs.
func (a *agent) setCurrent(g *generation) {
	a.gen.Store(g)
	if a.api != nil {
		if g.ingest != nil {
			a.api.SetIngest(g.ingest)
		} else {
			a.api.SetIngest(nil)
		}
	}
}

func (a *agent) start(cfg *config.Config) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	g, err := startGeneration(cfg, a.log, a.hooks, a.api, a.started)
	if err != nil {
		return err
	}
	a.setCurrent(g)
	return nil
}

func (a *agent) stop() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.current().stop()
}

// Apply swaps in a new, already validated config. The running generation
// stops cleanly (inputs stop, the pipeline commits and acks, uplinks get
// their bounded drain) and the new one starts on the same bbolt file: rules
// with an unchanged name and shape restore their window state, sources resume
// from their saved positions, the backlog is still there, and MQTT redelivers
// what was not acked. If the new generation fails to start, the old config
// is started again and the error returned.
func (a *agent) Apply(cfg *config.Config) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	old := a.current()
	// Rules that go away or change shape cannot hand their open windows to
	// the new config: emit what they hold now rather than lose it.
	old.p.FlushOnStop(changedRules(old.cfg, cfg))
	if err := old.stop(); err != nil {
		a.log.Warn("stopping the running config", "err", err)
	}
	g, err := startGeneration(cfg, a.log, a.hooks, a.api, a.started)
	if err == nil {
		a.setCurrent(g)
		a.log.Info("config applied", "inputs", len(cfg.Inputs), "rules", len(cfg.Rules), "uplinks", len(cfg.Uplinks))
		return nil
	}
	back, err2 := startGeneration(old.cfg, a.log, a.hooks, a.api, a.started)
	if err2 != nil {
		return fmt.Errorf("apply config: %w; restarting the previous config failed too: %v", err, err2)
	}
	a.setCurrent(back)
	return fmt.Errorf("apply config: %w (the previous config runs again)", err)
}

// changedRules names the rules of old that next removes or defines
// differently.
func changedRules(old, next *config.Config) []string {
	byName := map[string]config.Rule{}
	for _, r := range next.Rules {
		byName[r.Name] = r
	}
	var names []string
	for _, r := range old.Rules {
		if n, ok := byName[r.Name]; !ok || !reflect.DeepEqual(n.Spec(), r.Spec()) || n.From != r.From {
			names = append(names, r.Name)
		}
	}
	return names
}

// Flush closes every open window now and commits the outputs.
func (a *agent) Flush(ctx context.Context) error { return a.current().p.Flush(ctx) }

// generation is one running configuration: buffer, pipeline, forwarders and
// sources, started and stopped together.
type generation struct {
	cfg     *config.Config
	log     *slog.Logger
	buf     *buffer.Buffer
	p       *pipeline.Pipeline
	inputs  []*pipeline.Input
	rules   []*pipeline.Rule
	sources []*ingest.MQTT
	uplinks []uplink.Uplink
	fwds    []*pipeline.Forwarder
	closers []interface{ Close() } // log, http and health sources
	ingest  *http.ServeMux         // the HTTP inputs, served by the local API
	ready   chan struct{}          // closed when every input subscribed

	counters *ruleCounters // rule figures copied on the pipeline goroutine for the API
	status   *agentStatus  // the API's view of this generation

	stopSources, stopPipeline, stopForwarders context.CancelFunc
	pipeDone                                  chan error
	fwdWG                                     sync.WaitGroup
	stopped                                   bool
}

// startGeneration opens the buffer and starts forwarders, the pipeline and
// the sources, in that order, so that a backlog starts draining at once and
// no message arrives before the pipeline runs. On error everything started
// is stopped again.
//
// srv, when not nil, is the local API fed by this generation's hooks.
func startGeneration(cfg *config.Config, log *slog.Logger, hooks agentHooks, srv *api.Server, started time.Time) (_ *generation, err error) {
	g := &generation{cfg: cfg, log: log, ready: make(chan struct{}),
		stopSources: func() {}, stopPipeline: func() {}, stopForwarders: func() {}}
	defer func() {
		if err != nil {
			g.stop()
		}
	}()
	if err := os.MkdirAll(filepath.Dir(cfg.Buffer.Path), 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	uplinkNames := make([]string, len(cfg.Uplinks))
	for i, u := range cfg.Uplinks {
		uplinkNames[i] = u.Name
	}
	policy, _ := buffer.ParsePolicy(cfg.Buffer.Policy) // validated
	g.buf, err = buffer.Open(cfg.Buffer.Path, buffer.Options{
		Uplinks:    uplinkNames,
		NoSync:     cfg.Buffer.NoSync,
		MaxBytes:   int64(cfg.Buffer.MaxBytes),
		MaxRecords: cfg.Buffer.MaxRecords,
		MaxAge:     cfg.Buffer.MaxAge,
		Policy:     policy,
		Logger:     log,
	})
	if err != nil {
		return nil, err
	}
	if g.buf.MovedAside != "" {
		log.Error("started with a fresh buffer: the old file was damaged", "moved_to", g.buf.MovedAside)
	}

	inputIndex := map[string]int{}
	for i, in := range cfg.Inputs {
		dec, err := ingest.NewDecoder(in.Format, in.DecoderOptions())
		if err != nil {
			return nil, fmt.Errorf("input %s: %w", in.Name, err) // validated already
		}
		pin := &pipeline.Input{Name: in.Name, Decoder: dec}
		switch {
		case in.MQTT != nil:
			pin.MaxPayload = in.MQTT.MaxPayload
		case in.Log != nil:
			pin.MaxPayload = in.Log.MaxLineBytes
		case in.HTTP != nil:
			pin.MaxPayload = int(in.HTTP.MaxBody)
		}
		g.inputs = append(g.inputs, pin)
		inputIndex[in.Name] = i
	}
	for _, r := range cfg.Rules {
		plan, err := rules.Compile(r.Spec())
		if err != nil {
			return nil, err // validated already; the error names the rule
		}
		prio := buffer.PriorityNormal
		if r.HighPriority() {
			prio = buffer.PriorityHigh
		}
		g.rules = append(g.rules, &pipeline.Rule{Plan: plan, Input: inputIndex[r.From], To: r.To, Priority: prio})
	}
	g.counters = newRuleCounters(g.rules)
	g.p = pipeline.New(g.buf, g.inputs, g.rules, pipeline.Options{
		OnCommit:           g.counters.hook(srv),
		OnDeadLetter:       deadLetterHook(srv),
		Gateway:            cfg.Gateway,
		Tags:               tagFields(cfg.Tags),
		CommitInterval:     cfg.Buffer.CommitInterval,
		CommitMaxRecords:   cfg.Buffer.CommitMaxRecords,
		CheckpointInterval: cfg.Buffer.CheckpointInterval,
		Logger:             log,
	})
	if err := g.p.Restore(); err != nil {
		return nil, err
	}

	var fwdCtx context.Context
	fwdCtx, g.stopForwarders = context.WithCancel(context.Background())
	for _, u := range cfg.Uplinks {
		up, ok := hooks.uplinks[u.Name]
		if !ok {
			if up, err = newUplink(cfg, u, log); err != nil {
				return nil, err
			}
		}
		g.uplinks = append(g.uplinks, up)
		f := newForwarder(g.buf, up, u, log, pipeline.WithOnAck(ackHook(srv, u.Name)))
		g.fwds = append(g.fwds, f)
		g.fwdWG.Add(1)
		go func() {
			defer g.fwdWG.Done()
			if err := f.Run(fwdCtx); err != nil {
				log.Error("forwarder stopped", "uplink", u.Name, "err", err)
			}
		}()
	}

	var pipeCtx context.Context
	pipeCtx, g.stopPipeline = context.WithCancel(context.Background())
	g.pipeDone = make(chan error, 1)
	go func() { g.pipeDone <- g.p.Run(pipeCtx) }()

	var srcCtx context.Context
	srcCtx, g.stopSources = context.WithCancel(context.Background())
	for i, in := range cfg.Inputs {
		if in.Log != nil || in.HTTP != nil || in.Health != nil {
			if err := g.startOther(srcCtx, i, in, srv); err != nil {
				return nil, err
			}
			g.sources = append(g.sources, nil)
			continue
		}
		m := in.MQTT
		password, err := secret(m.PasswordFile, m.PasswordEnv)
		if err != nil {
			return nil, fmt.Errorf("input %s: %w", in.Name, err)
		}
		src := ingest.NewMQTT(ingest.MQTTOptions{
			Input: i, URL: m.URL, ClientID: m.ClientID, Topics: m.Topics, QoS: byte(*m.QoS),
			Username: m.Username, Password: password, KeepAlive: m.KeepAlive,
			ReadCoalesce: *m.ReadCoalesce, MaxPayload: m.MaxPayload, Logger: log,
		})
		src.SessionPresent = func(present bool) { g.p.SessionPresent(i, present) }
		if err := src.Start(srcCtx, g.p.In()); err != nil {
			log.Warn("input not connected yet; retrying in the background", "input", in.Name, "err", err)
		}
		g.sources = append(g.sources, src)
	}
	g.status = newAgentStatus(cfg, started, g.buf, g.p, g.inputs, g.sources, g.counters, g.fwds)
	go func() {
		for _, s := range g.sources {
			if s == nil {
				continue // a log input is ready once started
			}
			select {
			case <-s.Subscribed():
			case <-srcCtx.Done():
				return
			}
		}
		close(g.ready)
	}()
	return g, nil
}

// stop ends the generation in the order that keeps the delivery guarantee:
// sources stop handing out messages, the pipeline commits what it holds and
// acks it, the MQTT clients disconnect, uplinks get a bounded drain, the
// forwarders stop and the buffer closes.
func (g *generation) stop() error {
	if g.stopped {
		return nil
	}
	g.stopped = true
	g.stopSources()
	g.stopPipeline()
	var err error
	if g.pipeDone != nil {
		err = <-g.pipeDone
	}
	for _, s := range g.sources {
		if s != nil {
			s.Close()
		}
	}
	for _, c := range g.closers {
		c.Close()
	}
	if g.buf != nil && g.pipeDone != nil {
		drainUplinks(g.buf, g.cfg.ShutdownTimeout, g.log)
	}
	g.stopForwarders()
	g.fwdWG.Wait()
	for _, u := range g.uplinks {
		u.Close()
	}
	g.logTotals()
	if g.buf != nil {
		err = errors.Join(err, g.buf.Close())
	}
	return err
}

func (g *generation) logTotals() {
	for i, in := range g.inputs {
		var received uint64
		if i < len(g.sources) && g.sources[i] != nil {
			received = g.sources[i].Received.Load()
		}
		g.log.Info("input totals", "input", in.Name, "received", received, "messages", in.Stats.Messages.Load(),
			"dead_letters", in.Stats.DeadLetters.Load(), "duplicates", in.Stats.Duplicates.Load())
	}
	for _, r := range g.rules {
		st := r.Plan.Stats
		g.log.Info("rule totals", "rule", r.Plan.Name(), "processed", st.Processed, "filtered", st.Filtered, "late", st.Late, "groups_dropped", st.GroupsDropped, "emitted", st.Emitted)
	}
	if g.p != nil {
		g.log.Info("buffer totals", "commits", g.p.Stats.Commits.Load(), "outputs", g.p.Stats.Outputs.Load(), "records", g.buf.Records(), "last_seq", g.buf.LastSeq())
	}
}

// startOther starts a log-file, HTTP or health input. A log input resumes
// from the positions the last commits saved; HTTP inputs are served on the
// local API's listener.
func (g *generation) startOther(ctx context.Context, i int, in config.Input, srv *api.Server) error {
	var src interface {
		Start(context.Context, chan<- ingest.Message) error
		Close()
	}
	switch {
	case in.Log != nil:
		l := in.Log
		start, _ := ingest.ParseStart(l.Start) // validated
		lt, err := ingest.NewLogTail(ingest.LogTailOptions{
			Input: i, Name: in.Name, Paths: l.Paths, Start: start,
			LoadPositions: g.p.LoadPositions, Multiline: l.Multiline, MultilineWait: l.MultilineWait,
			MaxLineBytes: l.MaxLineBytes, PollInterval: l.PollInterval, RotateWait: l.RotateWait, Logger: g.log,
		})
		if err != nil {
			return fmt.Errorf("input %s: %w", in.Name, err)
		}
		src = lt
	case in.HTTP != nil:
		if srv == nil {
			return fmt.Errorf("input %s: an http input needs the local API", in.Name)
		}
		h := ingest.NewHTTP(ingest.HTTPOptions{Input: i, Name: in.Name, MaxBody: int64(in.HTTP.MaxBody), AckTimeout: in.HTTP.AckTimeout, Logger: g.log})
		if g.ingest == nil {
			g.ingest = http.NewServeMux()
		}
		g.ingest.Handle(h.Path(), h)
		src = h
	case in.Health != nil:
		src = ingest.NewHealth(ingest.HealthOptions{Input: i, Name: in.Name, Interval: in.Health.Interval, DiskPath: in.Health.DiskPath, Logger: g.log})
	}
	if err := src.Start(ctx, g.p.In()); err != nil {
		return fmt.Errorf("input %s: %w", in.Name, err)
	}
	g.closers = append(g.closers, src)
	return nil
}
