package main

import (
	"encoding/base64"
	"fmt"
	"log/slog"
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
	if n.FastBatch != nil {
		opts = append(opts, uplink.WithFastBatch(*n.FastBatch))
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

// deadLetterRouter turns the dead letters of inputs with dead_letters.to
// into buffer entries of rule config.DeadLetterRule, so that they reach their
// uplink on a subject of their own. The pipeline calls route for every dead
// letter (Options.RouteDeadLetter) and commits the entry with the message's
// ack: it is durable exactly when the message is released, crash or not.
type deadLetterRouter struct {
	tags   []rules.Field
	routes atomic.Pointer[map[string]deadLetterRoute]

	Routed atomic.Uint64 // entries handed to the pipeline's commit
}

func newDeadLetterRouter(tags map[string]string) *deadLetterRouter {
	r := &deadLetterRouter{tags: tagFields(tags)}
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

// route is the pipeline's RouteDeadLetter.
func (r *deadLetterRouter) route(input string, dl pipeline.DeadLetter) (buffer.Entry, bool) {
	rt, ok := (*r.routes.Load())[input]
	if !ok {
		return buffer.Entry{}, false
	}
	var payload []byte
	if rt.capture != nil {
		payload = rt.capture.TakeFailed()
	}
	r.Routed.Add(1)
	return buffer.Entry{Rule: config.DeadLetterRule, Key: input, Routes: rt.to,
		Payload: appendDeadLetter(nil, input, dl, payload, r.tags)}, true
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
