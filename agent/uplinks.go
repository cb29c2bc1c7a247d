package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/sluiceio/sluice/agent/config"
	"github.com/sluiceio/sluice/agent/ingest"
	"github.com/sluiceio/sluice/agent/pipeline"
	"github.com/sluiceio/sluice/buffer"
	"github.com/sluiceio/sluice/rules"
	"github.com/sluiceio/sluice/uplink"
)

// newUplink builds the uplink a config entry describes, reading its secrets
// and TLS files. The config was validated; errors here are about files and
// environment variables.
func newUplink(cfg *config.Config, u config.Uplink, log *slog.Logger) (uplink.Uplink, error) {
	if u.Kafka != nil {
		return newKafka(cfg, u, log)
	}
	n := u.NATS
	subject, err := uplink.ParseSubject(n.Subject)
	if err != nil {
		return nil, fmt.Errorf("uplink %s: %w", u.Name, err)
	}
	opts := []uplink.NATSOption{
		uplink.WithGateway(cfg.Gateway),
		uplink.WithSubject(subject),
		uplink.WithMaxInFlight(n.MaxInFlight),
		uplink.WithLogger(log),
	}
	if pk := n.Pack; pk != nil {
		opts = append(opts, uplink.WithPack(uplink.Pack{MaxRecords: pk.MaxRecords, MaxBytes: int(pk.MaxBytes), Compression: pk.Compression}))
	}
	if n.TLS != nil {
		t, err := uplink.LoadTLS(n.TLS.Files())
		if err != nil {
			return nil, fmt.Errorf("uplink %s: %w", u.Name, err)
		}
		opts = append(opts, uplink.WithNATSTLS(t))
	}
	switch {
	case n.Username != "":
		password, err := secret(n.PasswordFile, n.PasswordEnv)
		if err != nil {
			return nil, fmt.Errorf("uplink %s: password: %w", u.Name, err)
		}
		opts = append(opts, uplink.WithUserPassword(n.Username, password))
	case n.TokenFile != "" || n.TokenEnv != "":
		token, err := secret(n.TokenFile, n.TokenEnv)
		if err != nil {
			return nil, fmt.Errorf("uplink %s: token: %w", u.Name, err)
		}
		opts = append(opts, uplink.WithToken(token))
	case n.NKeySeedFile != "":
		opts = append(opts, uplink.WithNKeySeedFile(n.NKeySeedFile))
	case n.CredsFile != "":
		opts = append(opts, uplink.WithCredsFile(n.CredsFile))
	}
	return uplink.NewNATS(u.Name, n.URL, opts...)
}

func newKafka(cfg *config.Config, u config.Uplink, log *slog.Logger) (uplink.Uplink, error) {
	k := u.Kafka
	opts := []uplink.KafkaOption{
		uplink.WithKafkaGateway(cfg.Gateway),
		uplink.WithKafkaLogger(log),
	}
	if k.Topic != "" {
		topic, err := uplink.ParseTopic(k.Topic)
		if err != nil {
			return nil, fmt.Errorf("uplink %s: %w", u.Name, err)
		}
		opts = append(opts, uplink.WithTopic(topic))
	}
	codec, err := uplink.ParseCompression(k.Compression)
	if err != nil {
		return nil, fmt.Errorf("uplink %s: %w", u.Name, err)
	}
	opts = append(opts, uplink.WithCompression(codec))
	if k.DeliveryTimeout > 0 {
		opts = append(opts, uplink.WithDeliveryTimeout(k.DeliveryTimeout))
	}
	if k.TLS != nil {
		t, err := uplink.LoadTLS(k.TLS.Files())
		if err != nil {
			return nil, fmt.Errorf("uplink %s: %w", u.Name, err)
		}
		opts = append(opts, uplink.WithKafkaTLS(t))
	}
	if s := k.SASL; s != nil {
		password, err := secret(s.PasswordFile, s.PasswordEnv)
		if err != nil {
			return nil, fmt.Errorf("uplink %s: sasl password: %w", u.Name, err)
		}
		opts = append(opts, uplink.WithSASL(s.Mechanism, s.Username, password))
	}
	return uplink.NewKafka(u.Name, k.Brokers, opts...)
}

// newForwarder builds the forwarder of one uplink from its config entry.
func newForwarder(buf *buffer.Buffer, up uplink.Uplink, u config.Uplink, log *slog.Logger, extra ...pipeline.ForwarderOption) *pipeline.Forwarder {
	opts := []pipeline.ForwarderOption{
		pipeline.WithBatch(u.BatchRecords(), int(u.Batch.MaxBytes), u.Batch.Linger),
		pipeline.WithRateLimit(int64(u.RateLimit)),
		pipeline.WithBacklogSplit(u.BacklogSplit),
		pipeline.WithForwarderLogger(log),
	}
	return pipeline.NewForwarder(buf, up, append(opts, extra...)...)
}

// deadLetterRoute is where one input's dead letters go upstream.
type deadLetterRoute struct {
	to      []string        // uplink names
	capture *ingest.Capture // holds the whole payload of the last failed record
}

// deadLetterRouter commits the dead letters of inputs with dead_letters.to
// to the buffer, as entries of rule config.DeadLetterRule, so that they reach
// their uplink on a subject of their own.
//
// The pipeline calls hook on its goroutine for every dead letter, after the
// message's ack was queued for the next commit; flush runs in the
// pipeline's OnCommit hook, after that commit and before its acks are sent,
// so a dead letter is durable before its message is released. Dead letters
// of inputs that commit nothing else (MQTT QoS 0) are flushed by run after a
// commit interval. A flush that fails (a full buffer under the backpressure
// policy, a disk error) keeps the entries for the next one and does not hold
// the acks: a dead letter never wedges its input. What does not fit in the
// pending bound is dropped and counted.
type deadLetterRouter struct {
	buf      *buffer.Buffer
	log      *slog.Logger
	tags     []rules.Field
	interval time.Duration
	routes   atomic.Pointer[map[string]deadLetterRoute]

	mu           sync.Mutex
	pending      []buffer.Entry
	pendingBytes int
	kick         chan struct{}
	failing      bool

	Routed  atomic.Uint64 // committed to the buffer
	Dropped atomic.Uint64 // over the pending bound
}

// Bounds of dead letters waiting for their commit.
const (
	maxPendingDeadLetters     = 1000
	maxPendingDeadLetterBytes = 8 << 20
)

func newDeadLetterRouter(buf *buffer.Buffer, tags map[string]string, interval time.Duration, log *slog.Logger) *deadLetterRouter {
	r := &deadLetterRouter{buf: buf, log: log, tags: tagFields(tags), interval: interval, kick: make(chan struct{}, 1)}
	r.setRoutes(nil, nil)
	return r
}

// setRoutes points each input with dead_letters.to at its uplink; pins are
// the pipeline inputs by name, whose decoders are Captures for those inputs.
func (r *deadLetterRouter) setRoutes(inputs []config.Input, pins map[string]*pipeline.Input) {
	m := map[string]deadLetterRoute{}
	for _, in := range inputs {
		if in.DeadLetters == nil {
			continue
		}
		rt := deadLetterRoute{to: []string{in.DeadLetters.To}}
		if pin := pins[in.Name]; pin != nil {
			rt.capture, _ = pin.Decoder.(*ingest.Capture)
		}
		m[in.Name] = rt
	}
	r.routes.Store(&m)
}

// hook is the pipeline's OnDeadLetter for routing.
func (r *deadLetterRouter) hook(input string, dl pipeline.DeadLetter) {
	rt, ok := (*r.routes.Load())[input]
	if !ok {
		return
	}
	var payload []byte
	if rt.capture != nil {
		payload = rt.capture.TakeFailed()
	}
	e := buffer.Entry{Rule: config.DeadLetterRule, Key: input, Routes: rt.to,
		Payload: appendDeadLetter(nil, input, dl, payload, r.tags)}
	r.mu.Lock()
	if len(r.pending) >= maxPendingDeadLetters || r.pendingBytes+len(e.Payload) > maxPendingDeadLetterBytes {
		r.mu.Unlock()
		if r.Dropped.Add(1) == 1 {
			r.log.Warn("dead letters not routed: too many wait for a commit", "input", input)
		}
		return
	}
	r.pending = append(r.pending, e)
	r.pendingBytes += len(e.Payload)
	r.mu.Unlock()
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// flush commits the pending dead letters.
func (r *deadLetterRouter) flush() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.pending) == 0 {
		return
	}
	if err := r.buf.Commit(&buffer.Commit{Entries: r.pending}); err != nil {
		if !r.failing {
			r.log.Warn("dead letters not committed yet; retrying with the next commit", "n", len(r.pending), "err", err)
		}
		r.failing = true
		return
	}
	r.failing = false
	r.Routed.Add(uint64(len(r.pending)))
	clear(r.pending)
	r.pending = r.pending[:0]
	r.pendingBytes = 0
}

// run flushes dead letters that no pipeline commit covers, until ctx ends;
// a failed flush is retried every second.
func (r *deadLetterRouter) run(ctx context.Context) {
	t := time.NewTimer(time.Hour)
	t.Stop()
	for {
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-r.kick:
			t.Reset(r.interval)
		case <-t.C:
			r.flush()
			r.mu.Lock()
			again := len(r.pending) > 0
			r.mu.Unlock()
			if again {
				t.Reset(time.Second)
			}
		}
	}
}

// appendDeadLetter writes a dead letter as the payload of a buffer entry
// (the uplink adds gateway and seq): {"rule","ts","input","topic","reason",
// "payload" (or "payload_base64" when not UTF-8),"truncated","tags"}.
// payload is the whole message when the stage kept it, else the pipeline's
// sample of its first bytes, and truncated says so.
func appendDeadLetter(dst []byte, input string, dl pipeline.DeadLetter, payload []byte, tags []rules.Field) []byte {
	dst = append(dst, `{"rule":`...)
	dst = rules.AppendJSONString(dst, config.DeadLetterRule)
	dst = append(dst, `,"ts":"`...)
	dst = dl.Time.UTC().AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, `","input":`...)
	dst = rules.AppendJSONString(dst, input)
	dst = append(dst, `,"topic":`...)
	dst = rules.AppendJSONString(dst, dl.Topic)
	dst = append(dst, `,"reason":`...)
	dst = rules.AppendJSONString(dst, dl.Reason)
	truncated := payload == nil
	if truncated {
		payload = []byte(dl.Sample)
	}
	if utf8.Valid(payload) {
		dst = append(dst, `,"payload":`...)
		dst = rules.AppendJSONString(dst, string(payload))
	} else {
		dst = append(dst, `,"payload_base64":"`...)
		dst = base64.StdEncoding.AppendEncode(dst, payload)
		dst = append(dst, '"')
	}
	if truncated {
		dst = append(dst, `,"truncated":true`...)
	}
	if len(tags) > 0 {
		dst = append(dst, `,"tags":{`...)
		for i, t := range tags {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = rules.AppendJSONString(dst, t.Name)
			dst = append(dst, ':')
			dst = t.Value.AppendJSON(dst)
		}
		dst = append(dst, '}')
	}
	return append(dst, '}')
}
