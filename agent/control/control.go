// Package control is the agent's control plane over MQTT (DESIGN.md "Remote
// configuration over MQTT"): it follows the desired config of the gateway and
// of its groups, applies a new version through a Runtime when it is newer,
// targeted at this gateway, validly signed and valid, and reports the result;
// it answers allowlisted commands; it publishes a retained status (with a
// last will) and a periodic health document.
//
// The package knows nothing of rules, pipelines or buffers: it talks to the
// running agent through Runtime and keeps its small state (applied version
// and document, boot sequence, command ids) in a Store.
//
// Topics, under the gateway's prefix (default sluice/<gateway>/):
//
//	config/desired    retained, from the operator: Desired
//	config/reported   retained, from the agent: Reported
//	cmd/<name>/req    from the operator: Request
//	cmd/<name>/res    from the agent: Response (accepted, then succeeded or failed; or rejected)
//	status            retained: Status; {"state":"lost"} is the last will
//	health            every health interval
//
// and sluice/group/<name>/config/desired for each group followed.
package control

import (
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/sluiceio/sluice/agent/config"
	"github.com/sluiceio/sluice/buffer"
)

// Runtime is the running agent as the controller sees it. Its methods may be
// called concurrently: Status and BufferStats from the health loop, the
// others from the controller's single worker goroutine (one at a time).
type Runtime interface {
	// Apply validates cfg (the "config" member of a desired document, a JSON
	// object) and swaps it in. On error the running config is untouched;
	// validation errors are config.Errors (field paths relative to the
	// config, lines when known).
	Apply(ctx context.Context, cfg []byte) error
	// Flush closes every open window now and commits the outputs.
	Flush(ctx context.Context) error
	// Status is the agent's part of the health document (rates, dead
	// letters, uplink states); it must marshal to JSON.
	Status() any
	// BufferStats describes the buffer (records, bytes, oldest age, drops).
	BufferStats() any
	// TestRule compiles rule (a rule as in the config, JSON) and runs it over
	// records, returning its outputs; it touches nothing running.
	TestRule(ctx context.Context, rule json.RawMessage, records []json.RawMessage) ([]json.RawMessage, error)
	// Reload reloads the running configuration (the local file, or the last
	// applied document when one is running).
	Reload(ctx context.Context) error
}

// Commands is the allowlist: no other command name runs.
var Commands = []string{"ping", "flush", "status", "buffer-stats", "test-rule", "reload-config"}

// Limits of what the controller accepts.
const (
	MaxPayload = 1 << 20        // bytes of a desired document or a request
	MaxCmdTTL  = 24 * time.Hour // furthest expires_at accepted; ids are kept until they expire
	maxIDLen   = 128
	cmdTimeout = 60 * time.Second
)

// Options configure a Controller.
type Options struct {
	Gateway  string
	Control  config.Control // the local file's control section, defaults filled in
	Password string         // read from Control.PasswordFile / PasswordEnv by the caller
	Version  string         // the agent's version, in status
	DataDir  string         // its disk usage goes into health
	Runtime  Runtime
	Store    Store
	Logger   *slog.Logger
	// Host returns the host part of the health document; HostStats when nil.
	Host func(ctx context.Context) any
	Now  func() time.Time // time.Now when nil
}

// Controller is the control plane of one gateway. Create it with New and run
// it with Run. Messages are handled one at a time by one goroutine, in the
// order the broker delivered them, and acknowledged (QoS 1, persistent
// session) only after they were handled and the answer published.
type Controller struct {
	opts   Options
	rt     Runtime
	store  Store
	log    *slog.Logger
	keys   []ed25519.PublicKey
	prefix string
	now    func() time.Time

	mu             sync.Mutex // guards the fields below (read by health and onConnect)
	appliedDoc     []byte
	appliedVersion int64
	appliedSource  string
	appliedHash    string
	versions       map[string]int64
	bootSeq        uint64

	ids      map[string]time.Time // command ids handled, until they expire
	reported map[string]bool      // source/version rejections already reported this run

	client  mqtt.Client
	work    chan delivery
	publish func(topic string, qos byte, retained bool, payload []byte) error

	// Counters, safe to read at any time.
	Applied, Rejected, Commands, CommandsRejected atomic.Uint64
}

type delivery struct {
	topic   string
	payload []byte
	msg     mqtt.Message
}

// New loads the controller's state from the store and counts a boot.
func New(opts Options) (*Controller, error) {
	if opts.Runtime == nil || opts.Store == nil {
		return nil, errors.New("control: Runtime and Store are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Host == nil {
		dir := opts.DataDir
		opts.Host = func(ctx context.Context) any { return HostStats(ctx, dir) }
	}
	keys, err := opts.Control.PublicKeys()
	if err != nil {
		return nil, fmt.Errorf("control: trusted keys: %w", err)
	}
	prefix := opts.Control.Prefix
	if prefix == "" {
		prefix = "sluice/" + opts.Gateway + "/"
	}
	c := &Controller{opts: opts, rt: opts.Runtime, store: opts.Store, log: opts.Logger.With("component", "control"),
		keys: keys, prefix: prefix, now: opts.Now, ids: map[string]time.Time{}, reported: map[string]bool{},
		work: make(chan delivery, 64)}
	st, err := loadState(opts.Store)
	if err != nil {
		return nil, err
	}
	c.versions = st.versions
	if st.applied != nil {
		var d Desired
		if err := json.Unmarshal(st.applied, &d); err == nil {
			c.appliedDoc, c.appliedVersion, c.appliedHash = st.applied, d.Version, ConfigHash(d.Config)
			c.appliedSource = sourceOfTarget(d.Target)
		}
	}
	c.bootSeq = st.bootSeq + 1
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], c.bootSeq)
	if err := opts.Store.Save(ScopeState, []buffer.KV{{Key: []byte(keyBootSeq), Value: b[:]}}); err != nil {
		return nil, fmt.Errorf("control: save boot sequence: %w", err)
	}
	kvs, err := opts.Store.Load(ScopeCmdIDs)
	if err != nil {
		return nil, fmt.Errorf("control: load command ids: %w", err)
	}
	for _, kv := range kvs {
		if len(kv.Value) == 8 {
			c.ids[string(kv.Key)] = time.UnixMilli(int64(binary.BigEndian.Uint64(kv.Value)))
		}
	}
	c.publish = func(string, byte, bool, []byte) error { return errors.New("not connected") }
	return c, nil
}

// AppliedVersion returns the version of the running desired document (0:
// the local config runs).
func (c *Controller) AppliedVersion() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.appliedVersion
}

// BootSeq is this start's boot sequence number (1 at the first start).
func (c *Controller) BootSeq() uint64 { return c.bootSeq }

func sourceOfTarget(target string) string {
	if strings.HasPrefix(target, "group/") {
		return target
	}
	return "own"
}

// Topics.
func (c *Controller) desiredTopic() string  { return c.prefix + "config/desired" }
func (c *Controller) reportedTopic() string { return c.prefix + "config/reported" }
func (c *Controller) statusTopic() string   { return c.prefix + "status" }
func (c *Controller) healthTopic() string   { return c.prefix + "health" }
func (c *Controller) cmdFilter() string     { return c.prefix + "cmd/+/req" }

// GroupDesiredTopic is the desired config topic of a group.
func GroupDesiredTopic(group string) string { return "sluice/group/" + group + "/config/desired" }

// Run connects to the broker (retrying forever), follows the control topics
// and publishes health until ctx ends; then it publishes a "stopped" status
// and disconnects. It returns nil when ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	ct := c.opts.Control
	will, _ := json.Marshal(Status{State: "lost"})
	o := mqtt.NewClientOptions().
		AddBroker(ct.URL).
		SetClientID(ct.ClientID).
		SetCleanSession(false).
		SetAutoAckDisabled(true).
		SetOrderMatters(true).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(time.Second).
		SetMaxReconnectInterval(30*time.Second).
		SetKeepAlive(ct.KeepAlive).
		SetResumeSubs(false).
		SetBinaryWill(c.statusTopic(), will, 1, true).
		SetOnConnectHandler(c.onConnect).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			c.log.Warn("control: mqtt connection lost", "err", err)
		})
	if ct.Username != "" {
		o.SetUsername(ct.Username)
		o.SetPassword(c.opts.Password)
	}
	c.client = mqtt.NewClient(o)
	c.publish = func(topic string, qos byte, retained bool, payload []byte) error {
		t := c.client.Publish(topic, qos, retained, payload)
		if qos == 0 {
			return nil
		}
		if !t.WaitTimeout(10 * time.Second) {
			return fmt.Errorf("publish %s: no PUBACK within 10s", topic)
		}
		return t.Error()
	}
	c.client.Connect() // retries in the background until connected
	c.log.Info("control: connecting", "url", ct.URL, "prefix", c.prefix, "groups", ct.Groups)

	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); c.healthLoop(ctx) }()
	c.worker(ctx)
	wg.Wait()

	if c.client.IsConnected() {
		c.publishStatus("stopped")
	}
	c.client.Disconnect(250)
	return nil
}

// onConnect subscribes on every (re)connect and publishes the ready status.
// Retained desired documents arrive after each SUBACK; the version check makes
// seeing them again harmless.
func (c *Controller) onConnect(cl mqtt.Client) {
	filters := map[string]byte{c.desiredTopic(): 1, c.cmdFilter(): 1}
	for _, g := range c.opts.Control.Groups {
		filters[GroupDesiredTopic(g)] = 1
	}
	t := cl.SubscribeMultiple(filters, c.onMessage)
	go func() {
		if !t.WaitTimeout(10*time.Second) || t.Error() != nil {
			c.log.Error("control: subscribe failed; reconnecting", "err", t.Error())
			cl.Disconnect(0)
			return
		}
		c.log.Info("control: subscribed", "topics", len(filters))
		c.publishStatus("ready")
	}()
}

func (c *Controller) publishStatus(state string) {
	c.mu.Lock()
	s := Status{State: state, BootSeq: c.bootSeq, Version: c.opts.Version, ConfigVersion: c.appliedVersion,
		Time: c.now().UTC().Format(time.RFC3339Nano)}
	c.mu.Unlock()
	b, _ := json.Marshal(s)
	if err := c.publish(c.statusTopic(), 1, true, b); err != nil {
		c.log.Warn("control: publish status", "err", err)
	}
}

// onMessage runs on paho's router goroutine: it hands the message to the
// worker, which blocks the router when 64 are waiting (backpressure).
func (c *Controller) onMessage(_ mqtt.Client, m mqtt.Message) {
	c.work <- delivery{topic: m.Topic(), payload: m.Payload(), msg: m}
}

func (c *Controller) worker(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case d := <-c.work:
			c.handle(ctx, d.topic, d.payload)
			d.msg.Ack()
		}
	}
}

// handle dispatches one message and publishes the answers.
func (c *Controller) handle(ctx context.Context, topic string, payload []byte) {
	if src, ok := c.desiredSource(topic); ok {
		rep := c.HandleDesired(ctx, src, payload)
		if rep == nil {
			return
		}
		b, _ := json.Marshal(rep)
		if err := c.publish(c.reportedTopic(), 1, true, b); err != nil {
			c.log.Warn("control: publish report", "err", err)
		}
		if rep.Status == StatusApplied {
			c.publishStatus("ready") // the retained status carries the new config_version
		}
		return
	}
	if name, ok := c.commandName(topic); ok {
		c.HandleCommand(ctx, name, payload, func(r Response) {
			b, _ := json.Marshal(r)
			if err := c.publish(c.prefix+"cmd/"+name+"/res", 1, false, b); err != nil {
				c.log.Warn("control: publish command response", "cmd", name, "err", err)
			}
		})
		return
	}
	c.log.Warn("control: message on an unexpected topic", "topic", topic)
}

func (c *Controller) desiredSource(topic string) (string, bool) {
	if topic == c.desiredTopic() {
		return "own", true
	}
	for _, g := range c.opts.Control.Groups {
		if topic == GroupDesiredTopic(g) {
			return "group/" + g, true
		}
	}
	return "", false
}

func (c *Controller) commandName(topic string) (string, bool) {
	rest, ok := strings.CutPrefix(topic, c.prefix+"cmd/")
	if !ok {
		return "", false
	}
	name, ok := strings.CutSuffix(rest, "/req")
	return name, ok && name != "" && !strings.Contains(name, "/")
}

// HandleDesired handles one desired document from source ("own" or
// "group/<name>") and returns the report to publish, or nil when there is
// nothing to report (an empty payload clears a retained document; the
// document running now seen again). It never panics on any payload.
func (c *Controller) HandleDesired(ctx context.Context, source string, payload []byte) *Reported {
	if len(payload) == 0 {
		return nil
	}
	c.mu.Lock()
	rep := &Reported{AppliedVersion: c.appliedVersion, ConfigHash: c.appliedHash, Source: source}
	c.mu.Unlock()
	reject := func(errs ...ErrorItem) *Reported {
		rep.Status, rep.Errors, rep.Time = StatusRejected, errs, c.now().UTC()
		c.Rejected.Add(1)
		c.log.Warn("control: desired config rejected", "source", source, "version", rep.Version, "errors", errs)
		return rep
	}
	if len(payload) > MaxPayload {
		return reject(ErrorItem{Path: "", Msg: fmt.Sprintf("document of %d bytes is larger than %d", len(payload), MaxPayload)})
	}
	m, err := decodeObject(payload)
	if err != nil {
		return reject(ErrorItem{Path: "", Msg: err.Error()})
	}
	var d Desired
	var errs []ErrorItem
	field := func(name string, into any) bool {
		raw, ok := m[name]
		if !ok {
			return false
		}
		b, _ := json.Marshal(raw)
		if err := json.Unmarshal(b, into); err != nil {
			errs = append(errs, ErrorItem{Path: name, Msg: "wrong type: " + err.Error()})
		}
		return true
	}
	for k := range m {
		if !slices.Contains([]string{"version", "issued_at", "target", "config", "sig"}, k) {
			errs = append(errs, ErrorItem{Path: k, Msg: "unknown member"})
		}
	}
	if n := len(errs); !field("version", &d.Version) {
		errs = append(errs, ErrorItem{Path: "version", Msg: "is required"})
	} else if len(errs) == n && d.Version <= 0 {
		errs = append(errs, ErrorItem{Path: "version", Msg: "must be a positive integer"})
	}
	rep.Version = d.Version
	field("issued_at", &d.IssuedAt)
	if !field("target", &d.Target) {
		errs = append(errs, ErrorItem{Path: "target", Msg: "is required"})
	}
	field("sig", &d.Sig)
	var cfg map[string]json.RawMessage
	if !field("config", &cfg) {
		errs = append(errs, ErrorItem{Path: "config", Msg: "is required"})
	} else if cfg == nil && !hasPath(errs, "config") {
		errs = append(errs, ErrorItem{Path: "config", Msg: "must be an object"})
	}
	if len(errs) > 0 {
		return reject(sortItems(errs)...)
	}
	d.Config, _ = json.Marshal(m["config"])

	// Who may send it: the signature first, so that nothing else is
	// reported about a document from an unknown sender.
	if e := c.checkSig(payload, d.Sig); e != nil {
		return reject(*e)
	}
	wantTarget := c.opts.Gateway
	if source != "own" {
		wantTarget = source
	}
	if d.Target != wantTarget {
		return reject(ErrorItem{Path: "target", Msg: fmt.Sprintf("%q is not this gateway's target %q", d.Target, wantTarget)})
	}

	c.mu.Lock()
	applied := c.versions[source]
	ownApplied := c.versions["own"]
	same := c.appliedSource == source && c.appliedVersion == d.Version && c.appliedHash == ConfigHash(d.Config)
	c.mu.Unlock()
	if same {
		return nil // the running document, seen again (retained, after a reconnect)
	}
	if d.Version <= applied {
		return reject(ErrorItem{Path: "version", Msg: fmt.Sprintf("version %d is not above the applied version %d of %s (stale or replayed)", d.Version, applied, source)})
	}
	if source != "own" && ownApplied > 0 {
		key := fmt.Sprintf("%s/%d", source, d.Version)
		if c.reported[key] {
			return nil
		}
		c.reported[key] = true
		return reject(ErrorItem{Path: "target", Msg: fmt.Sprintf("this gateway runs its own config (version %d), which wins over %s", ownApplied, source)})
	}
	if _, ok := cfg["control"]; ok {
		return reject(ErrorItem{Path: "config.control", Msg: "is read from the local file only, never over MQTT"})
	}

	if err := c.rt.Apply(ctx, d.Config); err != nil {
		return reject(configErrors(err)...)
	}
	c.mu.Lock()
	c.appliedDoc, c.appliedVersion, c.appliedSource, c.appliedHash = payload, d.Version, source, ConfigHash(d.Config)
	c.versions[source] = d.Version
	vs, _ := json.Marshal(c.versions)
	c.mu.Unlock()
	if err := c.store.Save(ScopeState, []buffer.KV{{Key: []byte(keyApplied), Value: payload}, {Key: []byte(keyVersions), Value: vs}}); err != nil {
		// Running, but a restart without the broker would run the previous
		// document; the retained one is applied again on connect.
		c.log.Error("control: persist applied config", "version", d.Version, "err", err)
	}
	c.Applied.Add(1)
	c.log.Info("control: config applied", "source", source, "version", d.Version)
	rep.Status, rep.AppliedVersion, rep.ConfigHash, rep.Time = StatusApplied, d.Version, c.appliedHash, c.now().UTC()
	return rep
}

func hasPath(errs []ErrorItem, path string) bool {
	return slices.ContainsFunc(errs, func(e ErrorItem) bool { return e.Path == path })
}

func sortItems(errs []ErrorItem) []ErrorItem {
	sort.SliceStable(errs, func(i, j int) bool { return errs[i].Path < errs[j].Path })
	return errs
}

// checkSig applies the signing policy: with require_signed a signature must
// verify; without it, a signature present is verified when keys are
// configured.
func (c *Controller) checkSig(payload []byte, sig string) *ErrorItem {
	switch {
	case sig == "" && c.opts.Control.RequireSigned:
		return &ErrorItem{Path: "sig", Msg: ErrUnsigned.Error()}
	case sig == "" || len(c.keys) == 0:
		return nil
	}
	if err := Verify(payload, c.keys); err != nil {
		return &ErrorItem{Path: "sig", Msg: err.Error()}
	}
	return nil
}

// configErrors turns an Apply error into report items with paths under
// "config.".
func configErrors(err error) []ErrorItem {
	var ce config.Errors
	if errors.As(err, &ce) {
		items := make([]ErrorItem, len(ce))
		for i, e := range ce {
			p := "config"
			if e.Path != "" {
				p += "." + e.Path
			}
			items[i] = ErrorItem{Path: p, Line: e.Line, Msg: e.Msg}
		}
		return items
	}
	var fe config.FieldError
	if errors.As(err, &fe) {
		return []ErrorItem{{Path: "config." + fe.Path, Line: fe.Line, Msg: fe.Msg}}
	}
	return []ErrorItem{{Path: "config", Msg: err.Error()}}
}
