package control

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/sluiceio/sluice/buffer"
)

// HandleCommand handles one request for the command name and calls answer
// with each response: rejected (with the reason; nothing ran), or accepted
// then succeeded or failed. A request's id is recorded in the Store before the
// command runs, so a redelivered request never runs twice. It never panics on
// any payload.
func (c *Controller) HandleCommand(ctx context.Context, name string, payload []byte, answer func(Response)) {
	var req Request
	reject := func(format string, args ...any) {
		c.CommandsRejected.Add(1)
		detail := fmt.Sprintf(format, args...)
		c.log.Warn("control: command rejected", "cmd", name, "id", req.ID, "reason", detail)
		answer(Response{ID: req.ID, Status: CmdRejected, Detail: detail})
	}
	if len(payload) > MaxPayload {
		reject("request of %d bytes is larger than %d", len(payload), MaxPayload)
		return
	}
	m, err := decodeObject(payload)
	if err != nil {
		reject("request: %v", err)
		return
	}
	if id, ok := m["id"].(string); ok {
		req.ID = id // so that even a malformed request is answered with its id
	}
	for k := range m {
		if !slices.Contains([]string{"id", "name", "target", "args", "expires_at", "sig"}, k) {
			reject("request: unknown member %q", k)
			return
		}
	}
	if err := json.Unmarshal(payload, &req); err != nil {
		reject("request: %v", err)
		return
	}
	switch {
	case req.ID == "":
		reject("request: id is required")
		return
	case len(req.ID) > maxIDLen:
		req.ID = req.ID[:maxIDLen]
		reject("request: id is longer than %d bytes", maxIDLen)
		return
	case !slices.Contains(Commands, name):
		reject("unknown command %q (allowed: %s)", name, strings.Join(Commands, ", "))
		return
	}
	if e := c.checkSig(payload, req.Sig); e != nil {
		reject("%s", e.Msg)
		return
	}
	signed := req.Sig != "" && len(c.keys) > 0
	if req.Name != name && (req.Name != "" || signed) {
		reject("request is for command %q, not %q", req.Name, name)
		return
	}
	if req.Target != "" || signed {
		if !c.isTarget(req.Target) {
			reject("request targets %q, not this gateway", req.Target)
			return
		}
	}
	now := c.now()
	switch {
	case req.ExpiresAt.IsZero():
		reject("request: expires_at is required")
		return
	case !now.Before(req.ExpiresAt):
		reject("expired at %s", req.ExpiresAt.UTC().Format(time.RFC3339))
		return
	case req.ExpiresAt.Sub(now) > MaxCmdTTL:
		reject("expires_at is more than %s ahead", MaxCmdTTL)
		return
	}
	if _, seen := c.ids[req.ID]; seen {
		reject("duplicate id %q: already handled", req.ID)
		return
	}
	if err := c.rememberID(req.ID, req.ExpiresAt, now); err != nil {
		reject("cannot record the id, so not running it: %v", err)
		return
	}

	c.Commands.Add(1)
	answer(Response{ID: req.ID, Status: CmdAccepted})
	cctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	detail, err := c.run(cctx, name, req.Args)
	if err != nil {
		c.log.Warn("control: command failed", "cmd", name, "id", req.ID, "err", err)
		answer(Response{ID: req.ID, Status: CmdFailed, Detail: err.Error()})
		return
	}
	c.log.Info("control: command done", "cmd", name, "id", req.ID)
	answer(Response{ID: req.ID, Status: CmdSucceeded, Detail: detail})
}

// isTarget reports whether target names this gateway or one of its groups.
func (c *Controller) isTarget(target string) bool {
	if target == c.opts.Gateway {
		return true
	}
	g, ok := strings.CutPrefix(target, "group/")
	return ok && slices.Contains(c.opts.Control.Groups, g)
}

// rememberID saves id until it expires, and forgets the ids that expired.
func (c *Controller) rememberID(id string, expires, now time.Time) error {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(expires.UnixMilli()))
	kvs := []buffer.KV{{Key: []byte(id), Value: b[:]}}
	for old, exp := range c.ids {
		if exp.Before(now.Add(-time.Minute)) { // a minute of clock slack
			kvs = append(kvs, buffer.KV{Key: []byte(old)})
		}
	}
	if err := c.store.Save(ScopeCmdIDs, kvs); err != nil {
		return err
	}
	for _, kv := range kvs[1:] {
		delete(c.ids, string(kv.Key))
	}
	c.ids[id] = expires
	return nil
}

// testRuleArgs are the args of test-rule.
type testRuleArgs struct {
	Rule    json.RawMessage   `json:"rule"`
	Records []json.RawMessage `json:"records"`
}

func (c *Controller) run(ctx context.Context, name string, args json.RawMessage) (any, error) {
	switch name {
	case "ping":
		return map[string]any{"pong": c.now().UTC(), "boot_seq": c.bootSeq}, nil
	case "flush":
		if err := c.rt.Flush(ctx); err != nil {
			return nil, err
		}
		return "flushed", nil
	case "status":
		c.mu.Lock()
		v, src := c.appliedVersion, c.appliedSource
		c.mu.Unlock()
		return map[string]any{"agent": c.rt.Status(), "config_version": v, "config_source": src,
			"boot_seq": c.bootSeq, "version": c.opts.Version}, nil
	case "buffer-stats":
		return c.rt.BufferStats(), nil
	case "test-rule":
		var a testRuleArgs
		if len(args) > 0 {
			if err := json.Unmarshal(args, &a); err != nil {
				return nil, fmt.Errorf("args: %w", err)
			}
		}
		if len(a.Rule) == 0 {
			return nil, fmt.Errorf("args: rule is required")
		}
		outs, err := c.rt.TestRule(ctx, a.Rule, a.Records)
		if err != nil {
			return nil, err
		}
		if outs == nil {
			outs = []json.RawMessage{}
		}
		return map[string]any{"outputs": outs}, nil
	case "reload-config":
		if err := c.rt.Reload(ctx); err != nil {
			return nil, err
		}
		return "reloaded", nil
	}
	return nil, fmt.Errorf("unknown command %q", name) // not reached: allowlisted above
}
