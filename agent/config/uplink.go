package config

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"time"

	"github.com/sluiceio/sluice/uplink"
)

// Uplink is one upstream destination: exactly one of NATS and Kafka, and how
// its forwarder batches, paces and splits a backlog.
type Uplink struct {
	Name  string       `yaml:"name"`
	NATS  *NATSUplink  `yaml:"nats"`
	Kafka *KafkaUplink `yaml:"kafka"`

	// Batch bounds one delivery; zero fields take the defaults (4096
	// records, 1MiB, no linger). nats.batch_size, when set, is the
	// records bound.
	Batch Batch `yaml:"batch"`
	// RateLimit caps the uplink's bandwidth in bytes per second (estimated
	// wire bytes), for metered links; 0: no cap. After an outage the
	// backlog drains within it, alerts first, beside live outputs.
	RateLimit ByteSize `yaml:"rate_limit"`
	// BacklogSplit is the backlog, in outputs, above which live outputs are
	// sent beside it (default 10 batches); -1 never splits, so upstream
	// receives every priority in seq order.
	BacklogSplit int `yaml:"backlog_split"`
}

// Batch bounds the batches of an uplink.
type Batch struct {
	MaxRecords int           `yaml:"max_records"`
	MaxBytes   ByteSize      `yaml:"max_bytes"`
	Linger     time.Duration `yaml:"linger"` // wait for a batch to fill when idle; alerts never wait
}

// NATSUplink publishes to NATS, with JetStream acks where a stream covers
// the subject. At most one of username, token_*, nkey_seed_file and
// creds_file authenticates; secrets come from files or env vars.
type NATSUplink struct {
	URL         string `yaml:"url"`
	Subject     string `yaml:"subject"` // template: {gateway}, {rule}
	MaxInFlight int    `yaml:"max_in_flight"`
	BatchSize   int    `yaml:"batch_size"`
	// Pack sends many envelopes per message, NDJSON and optionally
	// compressed: far fewer messages and bytes on a metered link, at least
	// once instead of exactly once (see uplink.Pack). Off by default.
	Pack *NATSPack `yaml:"pack"`
	// FastBatch publishes each batch as one JetStream fast batch where the
	// stream allows it (allow_batched, nats-server 2.14+): a flow ack every few
	// hundred messages instead of a JSON ack each, same exactly-once
	// dedup. Default true; false: an ack per message.
	FastBatch *bool `yaml:"fast_batch"`

	TLS          *TLS   `yaml:"tls"`
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"`
	PasswordEnv  string `yaml:"password_env"`
	TokenFile    string `yaml:"token_file"`
	TokenEnv     string `yaml:"token_env"`
	NKeySeedFile string `yaml:"nkey_seed_file"` // a user NKey seed (SU...)
	CredsFile    string `yaml:"creds_file"`     // a .creds file: user JWT and NKey seed
}

// NATSPack packs envelopes into NATS messages.
type NATSPack struct {
	MaxRecords  int      `yaml:"max_records"` // envelopes per message, at least 2
	MaxBytes    ByteSize `yaml:"max_bytes"`   // uncompressed body bound; default 512KiB
	Compression string   `yaml:"compression"` // none (default), zstd or gzip
}

// KafkaUplink produces to Kafka with acks=all and the idempotent producer.
type KafkaUplink struct {
	Brokers         []string      `yaml:"brokers"`          // seed brokers, host:port
	Topic           string        `yaml:"topic"`            // template: {gateway}, {rule}; default sluice.{gateway}.{rule}
	Compression     string        `yaml:"compression"`      // none (default), gzip, snappy, lz4, zstd
	DeliveryTimeout time.Duration `yaml:"delivery_timeout"` // a record's time to be acked, retries included; default 30s, at least 1s
	TLS             *TLS          `yaml:"tls"`
	SASL            *SASL         `yaml:"sasl"`
}

// TLS names the files of a TLS client; an empty tls: {} uses the system
// roots.
type TLS struct {
	CAFile     string `yaml:"ca_file"`
	CertFile   string `yaml:"cert_file"`
	KeyFile    string `yaml:"key_file"`
	ServerName string `yaml:"server_name"`
}

// SASL authenticates to Kafka.
type SASL struct {
	Mechanism    string `yaml:"mechanism"` // PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"`
	PasswordEnv  string `yaml:"password_env"`
}

// Files returns the TLS files as the uplink package takes them.
func (t *TLS) Files() uplink.TLSFiles {
	return uplink.TLSFiles{CAFile: t.CAFile, CertFile: t.CertFile, KeyFile: t.KeyFile, ServerName: t.ServerName}
}

// BatchRecords returns the records bound of a batch (0: the forwarder's
// default).
func (u *Uplink) BatchRecords() int {
	if u.Batch.MaxRecords > 0 {
		return u.Batch.MaxRecords
	}
	if u.NATS != nil {
		return u.NATS.BatchSize
	}
	return 0
}

// validateUplinks checks the uplinks section and returns the names.
func (c *Config) validateUplinks(add func(path, format string, args ...any), checkName func(path, name string, seen map[string]bool)) map[string]bool {
	uplinks := map[string]bool{}
	for i, u := range c.Uplinks {
		p := fmt.Sprintf("uplinks[%d]", i)
		checkName(p+".name", u.Name, uplinks)
		switch {
		case u.NATS == nil && u.Kafka == nil:
			add(p, "needs a destination: nats or kafka")
		case u.NATS != nil && u.Kafka != nil:
			add(p, "has both nats and kafka: one destination per uplink")
		case u.NATS != nil:
			validateNATS(p+".nats", u.NATS, add)
		default:
			validateKafka(p+".kafka", u.Kafka, add)
		}
		if u.Batch.MaxRecords < 0 {
			add(p+".batch.max_records", "%d: want 0 (default) or more", u.Batch.MaxRecords)
		}
		if u.Batch.MaxBytes < 0 {
			add(p+".batch.max_bytes", "want 0 (default) or more")
		}
		if u.Batch.Linger < 0 || u.Batch.Linger > time.Minute {
			add(p+".batch.linger", "%v: want 0 to 1m", u.Batch.Linger)
		}
		if u.RateLimit < 0 || u.RateLimit > 0 && u.RateLimit < 1024 {
			add(p+".rate_limit", "want 0 (no cap) or at least 1KiB (bytes per second)")
		}
		if u.BacklogSplit < -1 {
			add(p+".backlog_split", "%d: want -1 (never), 0 (default) or more", u.BacklogSplit)
		}
	}
	if len(c.Uplinks) == 0 {
		add("uplinks", "needs at least one uplink")
	}

	return uplinks
}

func validateNATS(p string, n *NATSUplink, add func(path, format string, args ...any)) {
	if pu, err := url.Parse(n.URL); err != nil || pu.Host == "" {
		add(p+".url", "%q is not a server URL like nats://127.0.0.1:4222", n.URL)
	}
	if n.Subject != "" {
		if err := checkSubject(n.Subject); err != nil {
			add(p+".subject", "%v", err)
		}
	}
	auth := 0
	if n.Username != "" {
		auth++
		if n.PasswordFile == "" && n.PasswordEnv == "" {
			add(p+".username", "needs password_file or password_env")
		}
	} else if n.PasswordFile != "" || n.PasswordEnv != "" {
		add(p+".username", "required with a password")
	}
	if n.TokenFile != "" || n.TokenEnv != "" {
		auth++
	}
	if n.NKeySeedFile != "" {
		auth++
	}
	if n.CredsFile != "" {
		auth++
	}
	if auth > 1 {
		add(p, "use one of username, token_file/token_env, nkey_seed_file, creds_file")
	}
	if pk := n.Pack; pk != nil {
		if pk.MaxRecords < 2 {
			add(p+".pack.max_records", "%d: want at least 2 envelopes per message", pk.MaxRecords)
		}
		if pk.MaxBytes != 0 && (pk.MaxBytes < 1<<10 || pk.MaxBytes > 1<<20) {
			add(p+".pack.max_bytes", "want 1KiB to 1MiB (NATS's default max_payload)")
		}
		if !slices.Contains(uplink.PackCompressions, pk.Compression) {
			add(p+".pack.compression", "%q: want none, zstd or gzip", pk.Compression)
		}
	}
	oneSecret(p+".password", n.PasswordFile, n.PasswordEnv, add)
	oneSecret(p+".token", n.TokenFile, n.TokenEnv, add)
	validateTLS(p+".tls", n.TLS, add)
}

func validateKafka(p string, k *KafkaUplink, add func(path, format string, args ...any)) {
	if len(k.Brokers) == 0 {
		add(p+".brokers", "needs at least one broker like 127.0.0.1:9092")
	}
	for i, b := range k.Brokers {
		if host, port, err := net.SplitHostPort(b); err != nil || host == "" || port == "" {
			add(fmt.Sprintf("%s.brokers[%d]", p, i), "%q is not host:port", b)
		}
	}
	if k.Topic != "" {
		if _, err := uplink.ParseTopic(k.Topic); err != nil {
			add(p+".topic", "%v", err)
		}
	}
	if _, err := uplink.ParseCompression(k.Compression); err != nil {
		add(p+".compression", "%v", err)
	}
	if k.DeliveryTimeout != 0 && k.DeliveryTimeout < time.Second {
		add(p+".delivery_timeout", "%v: want at least 1s", k.DeliveryTimeout)
	}
	if s := k.SASL; s != nil {
		switch s.Mechanism {
		case uplink.SASLPlain, uplink.SASLScramSHA256, uplink.SASLScramSHA512:
		default:
			add(p+".sasl.mechanism", "%q is not supported (%s, %s, %s)", s.Mechanism, uplink.SASLPlain, uplink.SASLScramSHA256, uplink.SASLScramSHA512)
		}
		if s.Username == "" {
			add(p+".sasl.username", "%v", errRequired)
		}
		if s.PasswordFile == "" && s.PasswordEnv == "" {
			add(p+".sasl", "needs password_file or password_env")
		}
		oneSecret(p+".sasl.password", s.PasswordFile, s.PasswordEnv, add)
	}
	validateTLS(p+".tls", k.TLS, add)
}

func validateTLS(p string, t *TLS, add func(path, format string, args ...any)) {
	if t == nil {
		return
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		add(p, "cert_file and key_file go together")
	}
}

func oneSecret(p, file, env string, add func(path, format string, args ...any)) {
	if file != "" && env != "" {
		add(p, "use either %s_file or %s_env", lastSeg(p), lastSeg(p))
	}
}

func lastSeg(p string) string {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == '.' {
			return p[i+1:]
		}
	}
	return p
}

func checkSubject(s string) error {
	_, err := uplink.ParseSubject(s)
	return err
}
