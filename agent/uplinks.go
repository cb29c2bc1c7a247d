package main

import (
	"fmt"
	"log/slog"

	"github.com/sluiceio/sluice/agent/config"
	"github.com/sluiceio/sluice/agent/pipeline"
	"github.com/sluiceio/sluice/buffer"
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
