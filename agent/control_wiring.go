package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/sluiceio/sluice/agent/config"
	"github.com/sluiceio/sluice/agent/control"
	"github.com/sluiceio/sluice/agent/ingest"
	"github.com/sluiceio/sluice/buffer"
	"github.com/sluiceio/sluice/rules"
)

// bootConfig returns the config to start on: the last applied remote
// document when the control plane is on and one was persisted (the agent
// runs it even when the broker is unreachable), else the local file.
func bootConfig(local *config.Config, log *slog.Logger) *config.Config {
	if !local.Control.Enabled {
		return local
	}
	if _, err := os.Stat(local.Buffer.Path); errors.Is(err, os.ErrNotExist) {
		return local // first start: nothing applied yet
	}
	b, err := buffer.Open(local.Buffer.Path, buffer.Options{Logger: log})
	if err != nil {
		log.Warn("control: cannot read the applied config; starting on the local file", "err", err)
		return local
	}
	d, doc, err := control.LastApplied(control.BufferStore(func() *buffer.Buffer { return b }))
	b.Close()
	if err != nil || d == nil {
		return local
	}
	cfg, err := control.ParseRemote(doc, local)
	if err != nil {
		log.Error("control: the persisted config no longer validates; starting on the local file", "version", d.Version, "err", err)
		return local
	}
	log.Info("starting on the last applied remote config", "version", d.Version)
	return cfg
}

// startControl runs the control plane until ctx ends.
func startControl(ctx context.Context, a *agent, local *config.Config, log *slog.Logger) error {
	if !local.Control.Enabled {
		return nil
	}
	password, err := secret(local.Control.PasswordFile, local.Control.PasswordEnv)
	if err != nil {
		return fmt.Errorf("control: %w", err)
	}
	c, err := control.New(control.Options{
		Gateway: local.Gateway, Control: local.Control, Password: password, Version: version,
		DataDir: local.DataDir, Runtime: &controlRuntime{a: a, local: local}, Logger: log,
		Store: control.BufferStore(func() *buffer.Buffer { return a.current().buf }),
	})
	if err != nil {
		return err
	}
	go c.Run(ctx)
	return nil
}

// controlRuntime is the agent as the control plane sees it.
type controlRuntime struct {
	a     *agent
	local *config.Config
}

func (r *controlRuntime) Apply(_ context.Context, doc []byte) error {
	cfg, err := control.ParseRemote(doc, r.local)
	if err != nil {
		return err
	}
	return r.a.Apply(cfg)
}

func (r *controlRuntime) Flush(ctx context.Context) error { return r.a.Flush(ctx) }

func (r *controlRuntime) Status() any {
	g := r.a.current()
	inputs := map[string]any{}
	for _, in := range g.inputs {
		inputs[in.Name] = map[string]uint64{"messages": in.Stats.Messages.Load(), "dead_letters": in.Stats.DeadLetters.Load()}
	}
	return map[string]any{"inputs": inputs, "commits": g.p.Stats.Commits.Load(), "outputs": g.p.Stats.Outputs.Load()}
}

func (r *controlRuntime) BufferStats() any {
	b := r.a.current().buf
	return map[string]any{"records": b.Records(), "bytes": b.Bytes(), "oldest_age_s": b.OldestAge().Seconds(),
		"file_bytes": b.FileSize(), "last_seq": b.LastSeq()}
}

func (r *controlRuntime) TestRule(_ context.Context, rule json.RawMessage, records []json.RawMessage) ([]json.RawMessage, error) {
	// A rule in JSON is YAML too: decode it strictly as a config rule.
	var cr config.Rule
	dec := yaml.NewDecoder(bytes.NewReader(rule))
	dec.KnownFields(true)
	if err := dec.Decode(&cr); err != nil {
		return nil, fmt.Errorf("test-rule: rule: %w", err)
	}
	plan, err := cr.Compile()
	if err != nil {
		return nil, fmt.Errorf("test-rule: %w", err)
	}
	var (
		jd   ingest.JSONDecoder
		rec  rules.Record
		outs []rules.Output
		res  []json.RawMessage
	)
	collect := func() {
		for i := range outs {
			res = append(res, json.RawMessage(outs[i].AppendJSON(nil, nil)))
		}
	}
	for i, raw := range records {
		rec.Reset()
		rec.Time = time.Now()
		if err := jd.Decode(append([]byte(nil), raw...), &rec); err != nil {
			return nil, fmt.Errorf("test-rule: record %d: %w", i, err)
		}
		outs = plan.Process(&rec, outs[:0])
		collect()
	}
	outs = plan.Flush(outs[:0])
	collect()
	return res, nil
}

func (r *controlRuntime) Reload(context.Context) error {
	cfg, err := config.Load("TODO") // the path `sluice run --config` was given
	if err != nil {
		return err
	}
	return r.a.Apply(cfg)
}
