package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluiceio/sluice/agent/api"
	"github.com/sluiceio/sluice/agent/config"
	"github.com/sluiceio/sluice/agent/ingest"
	"github.com/sluiceio/sluice/agent/pipeline"
	"github.com/sluiceio/sluice/buffer"
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

	limits *limiter // nil in tests that start an agent by hand

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
	if a.limits != nil {
		a.limits.apply(cfg.Limits)
	}
	old := a.current()
	if sameFoundation(old.cfg, cfg) {
		err := old.reconfigure(cfg)
		if err == nil {
			a.setCurrent(old)
			a.log.Info("config applied in place", "inputs", len(cfg.Inputs), "rules", len(cfg.Rules), "uplinks", len(cfg.Uplinks))
			return nil
		}
		a.log.Warn("applying the config in place failed; restarting the pipeline", "err", err)
	}
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
	if a.limits != nil {
		a.limits.apply(old.cfg.Limits) // the rejected config's limits go with it
	}
	back, err2 := startGeneration(old.cfg, a.log, a.hooks, a.api, a.started)
	if err2 != nil {
		return fmt.Errorf("apply config: %w; restarting the previous config failed too: %v", err, err2)
	}
	a.setCurrent(back)
	return fmt.Errorf("apply config: %w (the previous config runs again)", err)
}

// changedRules names the rules of old that next removes or defines
// differently, or that call models next changes.
func changedRules(old, next *config.Config) []string {
	byName := map[string]config.Rule{}
	for _, r := range next.Rules {
		byName[r.Name] = r
	}
	// A rule that calls a model is changed when the models are: its plan
	// holds the old ones.
	modelsChanged := !reflect.DeepEqual(old.Models, next.Models)
	var names []string
	for _, r := range old.Rules {
		if n, ok := byName[r.Name]; !ok || !reflect.DeepEqual(n.Spec(), r.Spec()) || n.From != r.From ||
			modelsChanged && (r.UsesModels() || n.UsesModels()) {
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
	cfg        *config.Config
	log        *slog.Logger
	buf        *buffer.Buffer
	p          *pipeline.Pipeline
	inputs     []*pipeline.Input
	rules      []*pipeline.Rule
	sources    []*ingest.MQTT
	logs       []*ingest.LogTail // logs[i] tails input i's files; nil entries are allowed
	uplinks    []uplink.Uplink
	fwds       []*pipeline.Forwarder
	closers    map[int]interface{ Close() } // log, http and health sources by input index
	httpIns    map[int]*ingest.HTTP         // HTTP inputs by index, served by the local API
	ingest     *http.ServeMux               // built from httpIns
	srcStop    map[int]context.CancelFunc   // each input's own stop
	fwdStop    map[string]func()            // each uplink's forwarder: stop and wait
	upIndex    map[string]int               // uplink name → index in uplinks and fwds
	srcCtx     context.Context              // parent of the inputs' contexts
	fwdCtx     context.Context              // parent of the forwarders' contexts
	srv        *api.Server                  // the local API, or nil
	started    time.Time                    // the agent's start, for the API
	inIndex    map[string]int               // input name → pipeline input index (stable across swaps)
	hooks      agentHooks
	cfgUplinks []config.Uplink // the uplinks running now (cfg may be newer mid-swap)
	ready      chan struct{}   // closed when every input subscribed

	counters *ruleCounters // rule figures copied on the pipeline goroutine for the API
	status   *agentStatus  // the API's view of this generation

	dl *deadLetterRouter // dead letters of inputs with dead_letters.to

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
	g := &generation{cfg: cfg, log: log, ready: make(chan struct{}), srv: srv, hooks: hooks, started: started, inIndex: map[string]int{},
		closers: map[int]interface{ Close() }{}, httpIns: map[int]*ingest.HTTP{}, srcStop: map[int]context.CancelFunc{},
		fwdStop: map[string]func(){}, upIndex: map[string]int{},
		stopSources: func() {}, stopPipeline: func() {}, stopForwarders: func() {}}
	defer func() {
		if err != nil {
			g.stop()
		}
	}()
	if errs := cfg.ValidateDeadLetterRoutes(); len(errs) > 0 {
		return nil, errs
	}
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
		pin, err := newPipelineInput(in, cfg.Gateway, cfg.Tags)
		if err != nil {
			return nil, err // validated already
		}
		g.inputs = append(g.inputs, pin)
		inputIndex[in.Name] = i
		g.inIndex[in.Name] = i
	}
	g.dl = newDeadLetterRouter(cfg.Tags)
	g.dl.setRoutes(cfg.Inputs, g.pinsByName(g.inIndex, g.inputs))
	for _, r := range cfg.Rules {
		plan, err := r.Compile()
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
	onCommit, apiDeadLetter := g.counters.hook(srv), deadLetterHook(srv)
	g.p = pipeline.New(g.buf, g.inputs, g.rules, pipeline.Options{
		OnCommit:           onCommit,
		OnDeadLetter:       apiDeadLetter,
		RouteDeadLetter:    g.dl.route,
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

	g.fwdCtx, g.stopForwarders = context.WithCancel(context.Background())
	g.cfgUplinks = cfg.Uplinks
	for _, u := range cfg.Uplinks {
		if err := g.startUplink(u); err != nil {
			return nil, err
		}
	}

	var pipeCtx context.Context
	pipeCtx, g.stopPipeline = context.WithCancel(context.Background())
	g.pipeDone = make(chan error, 1)
	go func() { g.pipeDone <- g.p.Run(pipeCtx) }()

	g.srcCtx, g.stopSources = context.WithCancel(context.Background())
	for i, in := range cfg.Inputs {
		if err := g.startInput(i, in); err != nil {
			return nil, err
		}
	}
	g.rebuildIngest()
	g.status = newAgentStatus(cfg, started, g.buf, g.p, g.inputs, g.sources, g.counters, g.fwds).withLogs(g.logs)
	go func() {
		for _, s := range g.sources {
			if s == nil {
				continue // a log input is ready once started
			}
			select {
			case <-s.Subscribed():
			case <-g.srcCtx.Done():
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
	g.closers = nil
	if g.buf != nil && g.pipeDone != nil {
		drainUplinks(g.buf, g.cfg.ShutdownTimeout, g.log)
	}
	g.stopForwarders()
	g.fwdWG.Wait()
	for _, u := range g.uplinks {
		if u != nil {
			u.Close()
		}
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
	if g.dl != nil && g.dl.Routed.Load() > 0 {
		g.log.Info("dead letters upstream", "routed", g.dl.Routed.Load())
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
func (g *generation) startOther(ctx context.Context, i int, in config.Input) error {
	srv := g.srv
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
		// A new slice: the API's status may be reading the old one.
		logs := make([]*ingest.LogTail, max(len(g.logs), i+1))
		copy(logs, g.logs)
		logs[i] = lt
		g.logs = logs
	case in.HTTP != nil:
		if srv == nil {
			return fmt.Errorf("input %s: an http input needs the local API", in.Name)
		}
		h := ingest.NewHTTP(ingest.HTTPOptions{Input: i, Name: in.Name, MaxBody: int64(in.HTTP.MaxBody), AckTimeout: in.HTTP.AckTimeout, Logger: g.log})
		g.httpIns[i] = h
		src = h
	case in.Health != nil:
		src = ingest.NewHealth(ingest.HealthOptions{Input: i, Name: in.Name, Interval: in.Health.Interval, DiskPath: in.Health.DiskPath, Logger: g.log})
	}
	if err := src.Start(ctx, g.p.In()); err != nil {
		return fmt.Errorf("input %s: %w", in.Name, err)
	}
	g.closers[i] = src
	return nil
}

// startInput starts input i with its own context, so that a config swap can
// stop it alone.
func (g *generation) startInput(i int, in config.Input) error {
	ctx, cancel := context.WithCancel(g.srcCtx)
	g.srcStop[i] = cancel
	if len(g.sources) <= i {
		// A new slice: the API's status may be reading the old one.
		g.sources = append(slices.Clone(g.sources), make([]*ingest.MQTT, i+1-len(g.sources))...)
	}
	if in.MQTT == nil {
		return g.startOther(ctx, i, in)
	}
	m := in.MQTT
	password, err := secret(m.PasswordFile, m.PasswordEnv)
	if err != nil {
		return fmt.Errorf("input %s: %w", in.Name, err)
	}
	var tlsCfg *tls.Config
	if m.CAFile != "" || m.CertFile != "" {
		if tlsCfg, err = ingest.TLSConfig(m.CAFile, m.CertFile, m.KeyFile); err != nil {
			return fmt.Errorf("input %s: %w", in.Name, err)
		}
	}
	src := ingest.NewMQTT(ingest.MQTTOptions{
		Input: i, URL: m.URL, ClientID: m.ClientID, Topics: m.Topics, QoS: byte(*m.QoS),
		Username: m.Username, Password: password, KeepAlive: m.KeepAlive,
		ReadCoalesce: *m.ReadCoalesce, QuickAck: m.QuickAck, MaxAckDelay: *m.MaxAckDelay, MaxPayload: m.MaxPayload, MaxInflight: m.Inflight(), TLS: tlsCfg, Logger: g.log,
	})
	src.SessionPresent = func(present bool) { g.p.SessionPresent(i, present) }
	if err := src.Start(ctx, g.p.In()); err != nil {
		g.log.Warn("input not connected yet; retrying in the background", "input", in.Name, "err", err)
	}
	g.sources[i] = src
	return nil
}

// stopInput stops input i: its source sends nothing more once this returns.
func (g *generation) stopInput(i int) {
	if cancel := g.srcStop[i]; cancel != nil {
		cancel()
	}
	if i < len(g.sources) && g.sources[i] != nil {
		g.sources[i].Close()
		// Copy before writing: the API's status may be reading the old slice.
		g.sources = slices.Clone(g.sources)
		g.sources[i] = nil
	}
	if c := g.closers[i]; c != nil {
		c.Close()
		delete(g.closers, i)
	}
	if i < len(g.logs) && g.logs[i] != nil {
		g.logs = slices.Clone(g.logs)
		g.logs[i] = nil
	}
	delete(g.httpIns, i)
}

// rebuildIngest routes POST /ingest/<name> to the running HTTP inputs.
func (g *generation) rebuildIngest() {
	g.ingest = nil
	for _, h := range g.httpIns {
		if g.ingest == nil {
			g.ingest = http.NewServeMux()
		}
		g.ingest.Handle(h.Path(), h)
	}
}

// startUplink builds the uplink and runs its forwarder with its own context.
func (g *generation) startUplink(u config.Uplink) error {
	up, ok := g.hooks.uplinks[u.Name]
	if !ok {
		var err error
		if up, err = newUplink(g.cfg, u, g.log); err != nil {
			return err
		}
	}
	f := newForwarder(g.buf, up, u, g.log, pipeline.WithOnDelivered(ackHook(g.srv, u.Name)), pipeline.WithOnReject(rejectHook(g.srv, u.Name)))
	g.upIndex[u.Name] = len(g.uplinks)
	g.uplinks = append(g.uplinks, up)
	g.fwds = append(g.fwds, f)
	ctx, cancel := context.WithCancel(g.fwdCtx)
	done := make(chan struct{})
	g.fwdWG.Add(1)
	go func() {
		defer g.fwdWG.Done()
		defer close(done)
		if err := f.Run(ctx); err != nil {
			g.log.Error("forwarder stopped", "uplink", u.Name, "err", err)
		}
	}()
	g.fwdStop[u.Name] = func() { cancel(); <-done; up.Close() }
	return nil
}

// sameFoundation reports whether next differs from cur only in inputs, rules
// and uplinks, which a running generation can swap in place. A change of
// gateway, data dir, buffer, tags, broker or API restarts it; limits apply
// to the process (Apply sets them first) and need neither.
func sameFoundation(cur, next *config.Config) bool {
	return cur.Gateway == next.Gateway && cur.DataDir == next.DataDir &&
		reflect.DeepEqual(cur.Tags, next.Tags) && reflect.DeepEqual(cur.Buffer, next.Buffer) &&
		reflect.DeepEqual(cur.Broker, next.Broker) && reflect.DeepEqual(cur.API, next.API) &&
		cur.ShutdownTimeout == next.ShutdownTimeout
}

// reconfigure swaps in next's inputs, rules and uplinks without stopping
// what did not change: unchanged inputs keep their connections, unchanged
// rules their in-memory windows, unchanged uplinks their forwarders. New and
// changed parts are built (and rules compiled) before anything is touched;
// then removed and changed inputs stop, the pipeline swaps its rule set at a
// message boundary (emitting the windows of removed or changed rules), and
// the new inputs and uplinks start.
func (g *generation) reconfigure(next *config.Config) error {
	if errs := next.ValidateDeadLetterRoutes(); len(errs) > 0 {
		return errs
	}
	oldInputs := map[string]config.Input{}
	for _, in := range g.cfg.Inputs {
		oldInputs[in.Name] = in
	}
	inputs := append([]*pipeline.Input(nil), g.inputs...)
	index := map[string]int{}
	type startReq struct {
		i  int
		in config.Input
	}
	var starts []startReq
	for _, in := range next.Inputs {
		if i, ok := g.inIndex[in.Name]; ok && reflect.DeepEqual(oldInputs[in.Name], in) {
			index[in.Name] = i
			continue
		}
		pin, err := newPipelineInput(in, next.Gateway, next.Tags)
		if err != nil {
			return err
		}
		index[in.Name] = len(inputs)
		starts = append(starts, startReq{len(inputs), in})
		inputs = append(inputs, pin)
	}
	var stops []int
	for name, i := range g.inIndex {
		if j, ok := index[name]; !ok || j != i {
			stops = append(stops, i)
		}
	}

	oldRules := map[string]*pipeline.Rule{}
	for _, r := range g.rules {
		oldRules[r.Plan.Name()] = r
	}
	changed := changedRules(g.cfg, next)
	var rs, restore []*pipeline.Rule
	for _, r := range next.Rules {
		prio := buffer.PriorityNormal
		if r.HighPriority() {
			prio = buffer.PriorityHigh
		}
		if old, ok := oldRules[r.Name]; ok && !slices.Contains(changed, r.Name) {
			rs = append(rs, &pipeline.Rule{Plan: old.Plan, Input: index[r.From], To: r.To, Priority: prio})
			continue
		}
		plan, err := r.Compile()
		if err != nil {
			return err
		}
		nr := &pipeline.Rule{Plan: plan, Input: index[r.From], To: r.To, Priority: prio}
		rs = append(rs, nr)
		restore = append(restore, nr)
	}

	for _, i := range stops {
		g.stopInput(i)
	}
	// Routes first: a dead letter of a changed input between here and the
	// swap goes upstream with its sample instead of its whole payload.
	g.dl.setRoutes(next.Inputs, g.pinsByName(index, inputs))
	if err := g.p.Reconfigure(context.Background(), inputs, rs, changed, restore); err != nil {
		return err
	}
	g.cfg, g.inputs, g.rules, g.inIndex = next, inputs, rs, index
	g.counters.setRules(rs)
	for _, s := range starts {
		if err := g.startInput(s.i, s.in); err != nil {
			return err
		}
	}
	g.rebuildIngest()

	oldUplinks := map[string]config.Uplink{}
	for _, u := range g.cfgUplinks {
		oldUplinks[u.Name] = u
	}
	keep := map[string]bool{}
	for _, u := range next.Uplinks {
		if old, ok := oldUplinks[u.Name]; ok && reflect.DeepEqual(old, u) {
			keep[u.Name] = true
		}
	}
	var ups []uplink.Uplink
	var fwds []*pipeline.Forwarder
	idx := map[string]int{}
	for name, i := range g.upIndex {
		if !keep[name] {
			g.fwdStop[name]()
			delete(g.fwdStop, name)
			continue
		}
		// New slices: the API's status may be reading the old ones.
		idx[name] = len(ups)
		ups = append(ups, g.uplinks[i])
		fwds = append(fwds, g.fwds[i])
	}
	g.uplinks, g.fwds, g.upIndex = ups, fwds, idx
	names := make([]string, len(next.Uplinks))
	for i, u := range next.Uplinks {
		names[i] = u.Name
		if !keep[u.Name] {
			if err := g.startUplink(u); err != nil {
				return err
			}
		}
	}
	g.buf.SetUplinks(names)
	g.cfgUplinks = next.Uplinks
	g.status = newAgentStatus(next, g.started, g.buf, g.p, g.inputs, g.sources, g.counters, g.fwds).withLogs(g.logs)
	return nil
}

// pinsByName maps input names to their pipeline inputs.
func (g *generation) pinsByName(index map[string]int, inputs []*pipeline.Input) map[string]*pipeline.Input {
	m := make(map[string]*pipeline.Input, len(index))
	for name, i := range index {
		m[name] = inputs[i]
	}
	return m
}

// newPipelineInput builds the input stage of one configured input; gateway
// and tags are the gateway tags it may add. An input whose dead letters go
// upstream decodes through an ingest.Capture, which keeps the whole payload
// of a failed record for the dead-letter router.
func newPipelineInput(in config.Input, gateway string, tags map[string]string) (*pipeline.Input, error) {
	dec, err := ingest.NewDecoder(in.Format, in.DecoderOptions())
	if err != nil {
		return nil, fmt.Errorf("input %s: %w", in.Name, err)
	}
	pin := &pipeline.Input{Name: in.Name, Decoder: dec}
	if so := in.StageOptionsFor(gateway, tags); so != nil {
		if pin.Stage, err = ingest.NewStage(*so); err != nil {
			return nil, fmt.Errorf("input %s: %w", in.Name, err)
		}
	}
	if in.DeadLetters != nil {
		pin.Decoder = &ingest.Capture{Decoder: dec, Stage: pin.Stage}
		pin.Stage = nil
	}
	switch {
	case in.MQTT != nil:
		pin.MaxPayload = in.MQTT.MaxPayload
	case in.Log != nil:
		pin.MaxPayload = in.Log.MaxLineBytes
	case in.HTTP != nil:
		pin.MaxPayload = int(in.HTTP.MaxBody)
	}
	return pin, nil
}
