package main

import (
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sluiceio/sluice/agent/api"
	"github.com/sluiceio/sluice/agent/config"
	"github.com/sluiceio/sluice/agent/ingest"
	"github.com/sluiceio/sluice/agent/pipeline"
	"github.com/sluiceio/sluice/buffer"
)

// agentStatus builds the local API's status document from the running
// agent's objects. It reads only what is safe from another goroutine:
// atomic counters, the buffer's locked figures, the forwarders' Status, and
// the rules' counters as copied by ruleCounters. It implements api.Source;
// Status may be called concurrently.
type agentStatus struct {
	gateway string
	version string
	started time.Time
	caps    api.Buffer // the buffer's caps; the rest is read live

	buf      *buffer.Buffer
	pipe     *pipeline.Pipeline
	inputs   []*pipeline.Input
	sources  []*ingest.MQTT    // sources[i] feeds inputs[i]; nil entries are allowed
	logs     []*ingest.LogTail // logs[i] feeds inputs[i]; nil entries are allowed
	rules    *ruleCounters
	forwards []*pipeline.Forwarder
}

// newAgentStatus returns the status of an agent run with cfg. The slices are
// read, not copied: they must not change once the agent runs.
func newAgentStatus(cfg *config.Config, started time.Time, buf *buffer.Buffer, p *pipeline.Pipeline,
	inputs []*pipeline.Input, sources []*ingest.MQTT, rules *ruleCounters, forwards []*pipeline.Forwarder) *agentStatus {
	return &agentStatus{
		gateway: cfg.Gateway,
		version: version,
		started: started,
		caps: api.Buffer{
			MaxRecords:    cfg.Buffer.MaxRecords,
			MaxBytes:      int64(cfg.Buffer.MaxBytes),
			MaxAgeSeconds: cfg.Buffer.MaxAge.Seconds(),
		},
		buf: buf, pipe: p, inputs: inputs, sources: sources, rules: rules, forwards: forwards,
	}
}

// withLogs adds the log inputs' tailers, logs[i] feeding inputs[i]. The
// slice is read, not copied, like the others.
func (s *agentStatus) withLogs(logs []*ingest.LogTail) *agentStatus {
	s.logs = logs
	return s
}

// Status implements api.Source.
func (s *agentStatus) Status() api.Status {
	st := api.Status{Gateway: s.gateway, Version: s.version, Time: time.Now(), Started: s.started}
	ready := true
	st.Inputs = make([]api.Input, len(s.inputs))
	for i, in := range s.inputs {
		v := api.Input{
			Name:        in.Name,
			Messages:    in.Stats.Messages.Load(),
			DeadLetters: in.Stats.DeadLetters.Load(),
			Duplicates:  in.Stats.Duplicates.Load(),
		}
		if dl := in.Stats.LastDeadLetter(); !dl.Time.IsZero() {
			v.LastDeadLetter = &api.DeadLetter{Input: in.Name, Topic: dl.Topic, Reason: dl.Reason, Sample: dl.Sample, Time: dl.Time}
		}
		if i < len(s.sources) && s.sources[i] != nil {
			src := s.sources[i]
			v.Connected = src.Connected()
			v.Received, v.Oversized, v.Connects = src.Received.Load(), src.Oversized.Load(), src.Connects.Load()
			select {
			case <-src.Subscribed():
				v.Subscribed = true
			default:
			}
		}
		if i < len(s.logs) && s.logs[i] != nil {
			c := s.logs[i].Counters()
			v.Log = &api.LogInput{Lines: c.Lines, Bytes: c.Bytes, FilesOpened: c.Opened, Open: c.Open,
				Rotations: c.Rotations, Truncations: c.Truncations, LongLines: c.LongLines,
				Resumed: c.Resumed, Copies: c.Copies, Uncovered: c.Uncovered}
		}
		ready = ready && v.Subscribed
		st.Inputs[i] = v
	}
	st.Rules = s.rules.snapshot()
	st.Uplinks = make([]api.Uplink, len(s.forwards))
	for i, f := range s.forwards {
		fs := f.Status()
		u := api.Uplink{Name: fs.Uplink, State: fs.State.String(), Connected: fs.Connected, Lag: fs.Lag,
			Backlog: fs.Backlog, Delivered: fs.Delivered, Failures: fs.Failures, Rejected: fs.Rejected, LastError: fs.LastError}
		if !fs.LastErrorAt.IsZero() {
			at := fs.LastErrorAt
			u.LastErrorAt = &at
		}
		st.Uplinks[i] = u
	}
	st.Buffer = s.bufferStatus()
	st.Ready = ready && st.Buffer.Open
	ps := &s.pipe.Stats
	st.Pipeline = api.Pipeline{
		Commits:       ps.Commits.Load(),
		CommitErrors:  ps.CommitErrors.Load(),
		Outputs:       ps.Outputs.Load(),
		CommitSeconds: time.Duration(ps.CommitNanos.Load()).Seconds(),
		LastTick:      s.pipe.LastTick(),
	}
	return st
}

func (s *agentStatus) bufferStatus() api.Buffer {
	b := s.caps
	_, err := s.buf.LoadState("$sluice/api-probe") // fails once the buffer is closed
	b.Open = err == nil
	b.Records, b.Bytes, b.FileBytes = s.buf.Records(), s.buf.Bytes(), s.buf.FileSize()
	b.OldestAgeSeconds = s.buf.OldestAge().Seconds()
	b.LastSeq = s.buf.LastSeq()
	bs := &s.buf.Stats
	b.Commits, b.Committed, b.Deleted = bs.Commits.Load(), bs.Committed.Load(), bs.Deleted.Load()
	b.Dropped, b.Full, b.Compactions = bs.Dropped.Load(), bs.Full.Load(), bs.Compactions.Load()
	for k, n := range s.buf.Drops() {
		b.Drops = append(b.Drops, api.Drop{Rule: k.Rule, Priority: priorityName(k.Priority), Reason: k.Reason, Count: n})
	}
	sort.Slice(b.Drops, func(i, j int) bool {
		x, y := b.Drops[i], b.Drops[j]
		if x.Rule != y.Rule {
			return x.Rule < y.Rule
		}
		if x.Priority != y.Priority {
			return x.Priority < y.Priority
		}
		return x.Reason < y.Reason
	})
	return b
}

func priorityName(p buffer.Priority) string {
	switch p {
	case buffer.PriorityNormal:
		return "normal"
	case buffer.PriorityHigh:
		return "high"
	}
	return fmt.Sprintf("priority-%d", p)
}

// ruleCounters keeps copies of the rule plans' counters for the API. A
// plan's counters are plain fields written by the pipeline's goroutine, so
// they are copied only there: by the commit hook (hook), or by copy while the
// pipeline does not run. snapshot may be called from any goroutine.
type ruleCounters struct {
	rules []*pipeline.Rule

	mu    sync.Mutex
	stats []api.Rule
}

func newRuleCounters(rs []*pipeline.Rule) *ruleCounters {
	c := &ruleCounters{rules: rs, stats: make([]api.Rule, len(rs))}
	for i, r := range rs {
		c.stats[i].Name = r.Plan.Name()
	}
	return c
}

// setRules replaces the rules counted (after a config swap).
func (c *ruleCounters) setRules(rs []*pipeline.Rule) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rules, c.stats = rs, make([]api.Rule, len(rs))
	for i, r := range rs {
		c.stats[i].Name = r.Plan.Name()
	}
}

// copy takes the plans' counters. Call it only on the pipeline's goroutine
// or while the pipeline is not running.
func (c *ruleCounters) copy() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, r := range c.rules {
		ps := r.Plan.Stats
		c.stats[i] = api.Rule{Name: r.Plan.Name(), Processed: ps.Processed, Filtered: ps.Filtered, Late: ps.Late,
			GroupsDropped: ps.GroupsDropped, Emitted: ps.Emitted}
	}
}

// hook returns the pipeline's commit hook (pipeline.Options.OnCommit): it
// copies the counters, then tells srv, when there is one.
func (c *ruleCounters) hook(srv *api.Server) func([]buffer.Entry, time.Time, time.Duration) {
	return func(entries []buffer.Entry, oldest time.Time, took time.Duration) {
		c.copy()
		if srv != nil {
			srv.Committed(entries, oldest, took)
		}
	}
}

// ackHook returns the hook the named uplink's forwarder calls when the
// upstream acknowledged entries (WithOnDelivered), or nil without a server.
func ackHook(srv *api.Server, uplink string) func(buffer.Position) {
	if srv == nil {
		return nil
	}
	return srv.Acked(uplink)
}

// deadLetterHook returns the pipeline's dead-letter hook (once it has one),
// or nil without a server.
func deadLetterHook(srv *api.Server) func(input string, dl pipeline.DeadLetter) {
	if srv == nil {
		return nil
	}
	return func(input string, dl pipeline.DeadLetter) {
		srv.DeadLetter(api.DeadLetter{Input: input, Topic: dl.Topic, Reason: dl.Reason, Sample: dl.Sample, Time: dl.Time})
	}
}

// rejectHook returns the forwarder's hook for entries the upstream rejected
// for good: each becomes a dead letter of the input "uplink:<name>", with
// the rule as its topic, so the status API and dashboard show it beside the
// inputs' ones. Nil without a server.
func rejectHook(srv *api.Server, uplink string) func(e *buffer.Entry, err error) {
	if srv == nil {
		return nil
	}
	return func(e *buffer.Entry, err error) {
		sample := e.Payload[:min(len(e.Payload), 256)]
		srv.DeadLetter(api.DeadLetter{Input: "uplink:" + uplink, Topic: e.Rule, Reason: err.Error(),
			Sample: strings.ToValidUTF8(string(sample), "?"), Time: time.Now()})
	}
}

// newAPIServer builds the local API server from the api section; status
// gives it the running generation's status. It reads the token from its
// file or environment variable (never logged) and loads the TLS files; it
// returns an error when one cannot be read or when a non-loopback address
// has neither a token nor client certificates.
func newAPIServer(c config.API, gateway string, log *slog.Logger, status func() api.Status) (*api.Server, error) {
	token, err := secret(c.TokenFile, c.TokenEnv)
	if err != nil {
		return nil, fmt.Errorf("api token: %w", err)
	}
	opts := []api.Option{api.WithListen(c.Listen), api.WithToken(token), api.WithGateway(gateway), api.WithLogger(log)}
	if t := c.TLS; t != nil {
		tc, err := api.ServerTLS(t.CertFile, t.KeyFile, t.ClientCAFile)
		if err != nil {
			return nil, err
		}
		opts = append(opts, api.WithTLS(tc))
	}
	return api.New(api.SourceFunc(status), opts...)
}

// snapshot returns the last copy.
func (c *ruleCounters) snapshot() []api.Rule {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]api.Rule(nil), c.stats...)
}
