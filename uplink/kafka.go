package uplink

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/sluiceio/sluice/buffer"
)

// Defaults of the Kafka uplink.
const (
	DefaultKafkaTopic           = "sluice.{gateway}.{rule}"
	DefaultKafkaDeliveryTimeout = 30 * time.Second
	kafkaMaxTopics              = 4096 // cached topics before the cache is reset
)

// Kafka record headers set on every record.
const (
	KafkaHeaderSeq     = "seq"     // the entry's seq, decimal
	KafkaHeaderGateway = "gateway" // the gateway id
)

// ErrInvalidTopic is wrapped by the error of a delivery whose topic, expanded
// from the template with the gateway id and an entry's rule, is not a valid
// Kafka topic name. Retrying such an entry cannot succeed.
var ErrInvalidTopic = errors.New("invalid topic")

// ErrRecordTooLarge is wrapped by the error of a delivery whose record is
// larger than a produce batch may be (franz-go's default, about 1 MB).
var ErrRecordTooLarge = errors.New("record larger than a Kafka batch may be")

// kafkaMaxRecordBytes bounds one record's value and key: franz-go's default
// ProducerBatchMaxBytes (1,000,012) less room for the batch and record
// headers.
const kafkaMaxRecordBytes = 1_000_012 - 512

// Compression names a Kafka batch compression codec, as it appears in config.
type Compression string

// Codecs of WithCompression.
const (
	CompressionNone   Compression = "none"
	CompressionGzip   Compression = "gzip"
	CompressionSnappy Compression = "snappy"
	CompressionLZ4    Compression = "lz4"
	CompressionZstd   Compression = "zstd"
)

// ParseCompression reads a codec name ("" is none). It returns an error
// listing the known names otherwise.
func ParseCompression(s string) (Compression, error) {
	switch c := Compression(strings.ToLower(s)); c {
	case "":
		return CompressionNone, nil
	case CompressionNone, CompressionGzip, CompressionSnappy, CompressionLZ4, CompressionZstd:
		return c, nil
	}
	return "", fmt.Errorf("unknown compression %q (none, gzip, snappy, lz4, zstd)", s)
}

func (c Compression) codec() kgo.CompressionCodec {
	switch c {
	case CompressionGzip:
		return kgo.GzipCompression()
	case CompressionSnappy:
		return kgo.SnappyCompression()
	case CompressionLZ4:
		return kgo.Lz4Compression()
	case CompressionZstd:
		return kgo.ZstdCompression()
	}
	return kgo.NoCompression()
}

// SASL mechanisms of WithSASL.
const (
	SASLPlain       = "PLAIN"
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"
)

// Kafka is an Uplink that produces entries to Kafka with franz-go, one
// record per entry: the JSON envelope as value (see Envelope), the entry's
// group key as record key (nil when ungrouped, so such records spread over
// partitions), and the headers "seq" and "gateway". The topic is expanded
// from its template with the gateway id and the entry's rule.
//
// Durability. The producer is idempotent and waits for acks from all
// in-sync replicas (acks=all); Deliver returns nil only when every record of
// the batch was acknowledged so. Records of one key go to one partition in
// seq order: the client keeps their order through retries, leader changes and
// broker restarts (idempotent sequence numbers). A batch that Deliver
// reports failed may still have been written in part, and the forwarder
// sends it again: the copies carry the same seq header, by which consumers
// drop them. Records that cannot be sent within the delivery timeout
// (WithDeliveryTimeout) fail, so that the forwarder sees an outage.
//
// Concurrency. Deliver is called from one goroutine at a time (the forwarder
// that owns the uplink's cursor); Name, Connected, LastError and the
// counters may be read from any goroutine. Close is called once, after the
// last Deliver returned.
//
// Connection. NewKafka does not dial: the client connects on the first
// delivery and reconnects by itself, with franz-go's capped exponential
// backoff and jitter.
type Kafka struct {
	// Published counts records the brokers acknowledged.
	Published atomic.Uint64
	// Errors counts Deliver calls that returned an error.
	Errors atomic.Uint64
	// Connections is the number of broker connections open now.
	Connections atomic.Int64

	name    string
	gateway string
	topic   Template
	env     Envelope
	log     *slog.Logger
	cl      *kgo.Client

	errMu   sync.Mutex
	lastErr error // last broker connect error, for LastError

	// Deliver's state, touched only by the goroutine calling Deliver (and
	// by the promises of its records, which end before Deliver returns).
	topics  map[string]string // rule -> topic
	scratch []byte
	slab    []byte
	recs    []kgo.Record
	hdrs    []kgo.RecordHeader
	wg      sync.WaitGroup
	failMu  sync.Mutex
	fail    error  // first failed record's error in this batch
	failSeq uint64 // its seq
	promise func(*kgo.Record, error)
	gwBytes []byte
}

type kafkaConfig struct {
	topic       Template
	gateway     string
	compression Compression
	timeout     time.Duration
	tls         *tls.Config
	sasl        sasl.Mechanism
	log         *slog.Logger
	kopts       []kgo.Opt
}

// KafkaOption configures NewKafka.
type KafkaOption func(*kafkaConfig)

// WithTopic sets the topic template (default "sluice.{gateway}.{rule}").
// NewKafka rejects a template whose literal text is not valid in a topic
// name (letters, digits, '.', '_', '-').
func WithTopic(t Template) KafkaOption { return func(c *kafkaConfig) { c.topic = t } }

// WithKafkaGateway sets the gateway id written into every envelope and
// header. It is required.
func WithKafkaGateway(id string) KafkaOption { return func(c *kafkaConfig) { c.gateway = id } }

// WithCompression sets the batch compression codec (default none).
func WithCompression(codec Compression) KafkaOption {
	return func(c *kafkaConfig) { c.compression = codec }
}

// WithDeliveryTimeout sets how long a record may wait for its ack, across
// the client's retries, before it fails (default 30s). Deliver also returns
// when its context ends. franz-go allows no less than 1s.
func WithDeliveryTimeout(d time.Duration) KafkaOption {
	return func(c *kafkaConfig) { c.timeout = d }
}

// WithKafkaTLS connects with TLS (see LoadTLS).
func WithKafkaTLS(cfg *tls.Config) KafkaOption { return func(c *kafkaConfig) { c.tls = cfg } }

// WithSASL authenticates with SASL PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512
// (the mechanism's name as in SASLPlain and the others). NewKafka rejects
// another mechanism. Use it with TLS: PLAIN sends the password as it is.
func WithSASL(mechanism, user, password string) KafkaOption {
	return func(c *kafkaConfig) {
		switch strings.ToUpper(mechanism) {
		case SASLPlain:
			c.sasl = plain.Auth{User: user, Pass: password}.AsMechanism()
		case SASLScramSHA256:
			c.sasl = scram.Auth{User: user, Pass: password}.AsSha256Mechanism()
		case SASLScramSHA512:
			c.sasl = scram.Auth{User: user, Pass: password}.AsSha512Mechanism()
		default:
			c.sasl = badMechanism(mechanism)
		}
	}
}

// badMechanism stands for a mechanism WithSASL does not know, so that NewKafka
// can name it in its error.
type badMechanism string

func (m badMechanism) Name() string { return string(m) }
func (m badMechanism) Authenticate(context.Context, string) (sasl.Session, []byte, error) {
	return nil, nil, fmt.Errorf("unknown SASL mechanism %q", string(m))
}

// WithKafkaLogger sets the logger for connection events (default
// slog.Default()).
func WithKafkaLogger(l *slog.Logger) KafkaOption { return func(c *kafkaConfig) { c.log = l } }

// WithKafkaOptions adds options of the franz-go client. They are applied
// after the uplink's own, so they override them; an option that turns off
// idempotency or acks=all breaks the uplink's guarantee.
func WithKafkaOptions(opts ...kgo.Opt) KafkaOption {
	return func(c *kafkaConfig) { c.kopts = append(c.kopts, opts...) }
}

// NewKafka returns a Kafka uplink called name that produces to the seed
// brokers (host:port). It returns an error when an option is invalid; a
// broker that cannot be reached is not an error (see Kafka).
func NewKafka(name string, brokers []string, opts ...KafkaOption) (*Kafka, error) {
	cfg := kafkaConfig{timeout: DefaultKafkaDeliveryTimeout, compression: CompressionNone}
	for _, o := range opts {
		o(&cfg)
	}
	if name == "" {
		return nil, errors.New("kafka uplink: empty name")
	}
	if cfg.gateway == "" {
		return nil, fmt.Errorf("kafka %s: %w", name, ErrNoGateway)
	}
	if len(brokers) == 0 {
		return nil, fmt.Errorf("kafka %s: no seed brokers", name)
	}
	if cfg.topic.parts == nil {
		t, err := ParseTemplate(DefaultKafkaTopic)
		if err != nil {
			panic(err) // a constant
		}
		cfg.topic = t
	}
	if err := cfg.topic.checkTopic(); err != nil {
		return nil, fmt.Errorf("kafka %s: topic: %w", name, err)
	}
	if _, err := ParseCompression(string(cfg.compression)); err != nil {
		return nil, fmt.Errorf("kafka %s: %w", name, err)
	}
	if cfg.timeout <= 0 {
		return nil, fmt.Errorf("kafka %s: delivery timeout %v, want more than 0", name, cfg.timeout)
	}
	if m, ok := cfg.sasl.(badMechanism); ok {
		return nil, fmt.Errorf("kafka %s: unknown SASL mechanism %q (%s, %s, %s)", name, string(m), SASLPlain, SASLScramSHA256, SASLScramSHA512)
	}
	if cfg.log == nil {
		cfg.log = slog.Default()
	}
	k := &Kafka{
		name:    name,
		gateway: cfg.gateway,
		topic:   cfg.topic,
		env:     NewEnvelope(cfg.gateway),
		log:     cfg.log.With("uplink", name),
		topics:  make(map[string]string),
		gwBytes: []byte(cfg.gateway),
	}
	k.promise = k.onAck
	kopts := []kgo.Opt{
		kgo.SeedBrokers(brokers...),
		kgo.ClientID("sluice-" + cfg.gateway + "-" + name),
		kgo.RequiredAcks(kgo.AllISRAcks()), // the default; said so the guarantee is visible here
		kgo.ProducerBatchCompression(cfg.compression.codec()),
		kgo.RecordDeliveryTimeout(cfg.timeout),
		kgo.ProducerLinger(0), // the forwarder batches already
		kgo.WithHooks(kafkaHooks{k}),
	}
	if cfg.tls != nil {
		kopts = append(kopts, kgo.DialTLSConfig(cfg.tls))
	}
	if cfg.sasl != nil {
		kopts = append(kopts, kgo.SASL(cfg.sasl))
	}
	kopts = append(kopts, cfg.kopts...)
	cl, err := kgo.NewClient(kopts...)
	if err != nil {
		return nil, fmt.Errorf("kafka %s: client: %w", name, err)
	}
	k.cl = cl
	return k, nil
}

// kafkaHooks tracks the broker connections for Connected and LastError.
type kafkaHooks struct{ k *Kafka }

func (h kafkaHooks) OnBrokerConnect(meta kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	if err != nil {
		h.k.errMu.Lock()
		h.k.lastErr = fmt.Errorf("connect to broker %d at %s:%d: %w", meta.NodeID, meta.Host, meta.Port, err)
		h.k.errMu.Unlock()
		return
	}
	h.k.Connections.Add(1)
}

func (h kafkaHooks) OnBrokerDisconnect(kgo.BrokerMetadata, net.Conn) { h.k.Connections.Add(-1) }

// Name returns the uplink's name.
func (k *Kafka) Name() string { return k.name }

// Connected reports whether the client has a connection to a broker open
// now. It is false before the first delivery (the client dials lazily).
func (k *Kafka) Connected() bool { return k.Connections.Load() > 0 }

// Deliver produces every entry of batch and returns nil when the brokers
// acknowledged all of them (acks=all). Otherwise it returns an error naming
// the first failed entry and wrapping the cause: ErrInvalidTopic or
// ErrRecordTooLarge (both in a PermanentError), the broker's error,
// kgo.ErrRecordTimeout after the delivery timeout, or ctx.Err(). A topic
// whose max.message.bytes is below the record's size fails the whole
// produce batch on the broker, so that is retried like other broker errors.
// It always waits until the client is done with every record of
// the batch, so a failed batch may be sent again at once.
func (k *Kafka) Deliver(ctx context.Context, batch []buffer.Entry) error {
	if len(batch) == 0 {
		return nil
	}
	if len(k.topics) > kafkaMaxTopics {
		clear(k.topics)
	}
	size := 0
	for i := range batch {
		size += len(k.env.prefix) + 2*21 + len(batch[i].Payload) + len(batch[i].Key) + len(`,"payload":}`)
	}
	if cap(k.slab) < size {
		k.slab = make([]byte, 0, size)
	}
	if cap(k.recs) < len(batch) {
		k.recs = make([]kgo.Record, len(batch))
		k.hdrs = make([]kgo.RecordHeader, 2*len(batch))
	}
	slab := k.slab[:0]
	recs := k.recs[:len(batch)]
	k.fail, k.failSeq = nil, 0

	var err error
	n := 0
	for i := range batch {
		e := &batch[i]
		topic, terr := k.topicOf(e.Rule)
		if terr != nil {
			err = permanent(e.Seq, fmt.Errorf("kafka %s: produce seq %d: %w", k.name, e.Seq, terr))
			break
		}
		if sz := len(k.env.prefix) + 21 + len(e.Payload) + len(e.Key); sz > kafkaMaxRecordBytes {
			// The client would fail it (larger than a produce batch may be)
			// on every attempt.
			err = permanent(e.Seq, fmt.Errorf("kafka %s: produce seq %d: %d bytes: %w", k.name, e.Seq, sz, ErrRecordTooLarge))
			break
		}
		start := len(slab)
		slab = k.env.Append(slab, e)
		value := slab[start:len(slab):len(slab)]
		start = len(slab)
		slab = strconv.AppendUint(slab, e.Seq, 10)
		seq := slab[start:len(slab):len(slab)]
		hdrs := k.hdrs[2*i : 2*i+2 : 2*i+2]
		hdrs[0] = kgo.RecordHeader{Key: KafkaHeaderSeq, Value: seq}
		hdrs[1] = kgo.RecordHeader{Key: KafkaHeaderGateway, Value: k.gwBytes}
		r := &recs[i]
		*r = kgo.Record{Topic: topic, Value: value, Headers: hdrs, Context: ctx}
		if e.Key != "" {
			start = len(slab)
			slab = append(slab, e.Key...)
			r.Key = slab[start:len(slab):len(slab)]
		}
		k.wg.Add(1)
		n++
		k.cl.Produce(ctx, r, k.promise)
	}
	k.wg.Wait()
	clear(recs[:n]) // drop references to the batch and the context
	k.slab = slab[:0]
	if err == nil && k.fail != nil {
		err = fmt.Errorf("kafka %s: produce seq %d: %w", k.name, k.failSeq, k.fail)
	}
	if err != nil {
		k.Errors.Add(1)
		return err
	}
	return nil
}

// onAck is the promise of every record; franz-go calls it from its own
// goroutines.
func (k *Kafka) onAck(r *kgo.Record, err error) {
	if err == nil {
		k.Published.Add(1)
	} else {
		k.failMu.Lock()
		if k.fail == nil {
			k.fail = err
			k.failSeq, _ = strconv.ParseUint(string(r.Headers[0].Value), 10, 64)
		}
		k.failMu.Unlock()
	}
	k.wg.Done()
}

// topicOf returns the topic of a rule's records.
func (k *Kafka) topicOf(rule string) (string, error) {
	if t, ok := k.topics[rule]; ok {
		return t, nil
	}
	k.scratch = k.topic.Append(k.scratch[:0], k.gateway, rule)
	if !validTopic(k.scratch) {
		return "", fmt.Errorf("rule %q: %w %q", rule, ErrInvalidTopic, k.scratch)
	}
	t := string(k.scratch)
	k.topics[rule] = t
	return t, nil
}

// LastError returns the last error of a broker connection attempt, or nil.
func (k *Kafka) LastError() error {
	k.errMu.Lock()
	defer k.errMu.Unlock()
	return k.lastErr
}

// Close flushes nothing (Deliver waits for its records) and closes the
// client. It returns nil.
func (k *Kafka) Close() error {
	k.cl.Close()
	return nil
}

// checkTopic checks that the literal text of t may appear in a Kafka topic
// name: letters, digits, '.', '_' and '-'.
func (t Template) checkTopic() error {
	if len(t.parts) == 0 {
		return fmt.Errorf("%w: empty", ErrInvalidTemplate)
	}
	for _, p := range t.parts {
		for i := 0; i < len(p.lit); i++ {
			if !topicChar(p.lit[i]) {
				return fmt.Errorf("%w %q: %q is not allowed in a Kafka topic (letters, digits, '.', '_', '-')", ErrInvalidTemplate, t.src, p.lit[i])
			}
		}
	}
	return nil
}

// ParseTopic parses s as ParseTemplate does and also checks that its literal
// text is valid in a Kafka topic name.
func ParseTopic(s string) (Template, error) {
	t, err := ParseTemplate(s)
	if err != nil {
		return Template{}, err
	}
	if err := t.checkTopic(); err != nil {
		return Template{}, err
	}
	return t, nil
}

// validTopic reports whether b is a valid Kafka topic name.
func validTopic(b []byte) bool {
	if len(b) == 0 || len(b) > 249 || string(b) == "." || string(b) == ".." {
		return false
	}
	for _, c := range b {
		if !topicChar(c) {
			return false
		}
	}
	return true
}

func topicChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
}
