package uplink

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"

	"github.com/sluiceio/sluice/buffer"
)

// kafkaTopics are the topics the default template gives for the rules of
// keyedEntries.
var kafkaTopics = []string{"sluice.gw-01.r0", "sluice.gw-01.r1"}

func startKafka(t testing.TB, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	opts = append([]kfake.Opt{kfake.NumBrokers(3), kfake.SeedTopics(3, kafkaTopics...)}, opts...)
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func newTestKafka(t testing.TB, brokers []string, opts ...KafkaOption) *Kafka {
	t.Helper()
	opts = append([]KafkaOption{
		WithKafkaGateway(testGateway),
		WithKafkaLogger(slog.New(slog.DiscardHandler)),
		// Tests restart brokers: retry quickly.
		WithKafkaOptions(kgo.RetryBackoffFn(func(int) time.Duration { return 20 * time.Millisecond })),
	}, opts...)
	k, err := NewKafka("cloud", brokers, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

// keyedEntries returns n entries with seqs from first on, over two rules and
// ten group keys.
func keyedEntries(first uint64, n int) []buffer.Entry {
	b := entries(first, n, "r0", "r1")
	for i := range b {
		b[i].Key = fmt.Sprintf("dev-%d", (first+uint64(i))%10)
	}
	return b
}

// kafkaRecord is one consumed record as the tests check it.
type kafkaRecord struct {
	topic     string
	partition int32
	key       string
	seq       uint64
	gateway   string
	env       envelope
}

// consumeKafka reads the topics from the start until it has at least want
// records or the timeout passes, then returns what it read.
func consumeKafka(t testing.TB, brokers []string, want int, timeout time.Duration, opts ...kgo.Opt) []kafkaRecord {
	t.Helper()
	opts = append([]kgo.Opt{kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(kafkaTopics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}, opts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out []kafkaRecord
	for len(out) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d records, want %d within %v", len(out), want, timeout)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Logf("fetch %s/%d: %v", topic, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			kr := kafkaRecord{topic: r.Topic, partition: r.Partition, key: string(r.Key)}
			for _, h := range r.Headers {
				switch h.Key {
				case KafkaHeaderSeq:
					kr.seq, _ = strconv.ParseUint(string(h.Value), 10, 64)
				case KafkaHeaderGateway:
					kr.gateway = string(h.Value)
				}
			}
			if err := json.Unmarshal(r.Value, &kr.env); err != nil {
				t.Errorf("record %s/%d@%d: %s: %v", r.Topic, r.Partition, r.Offset, r.Value, err)
			}
			out = append(out, kr)
		})
	}
	return out
}

// checkKafka checks that recs hold every entry of want (by seq), each as the
// uplink should have written it, and that the records of each key are in
// seq order. It returns the number of duplicates (records whose seq was seen
// before); each is checked to follow its first copy's order.
func checkKafka(t testing.TB, recs []kafkaRecord, want []buffer.Entry) (dups int) {
	t.Helper()
	byseq := make(map[uint64]*buffer.Entry, len(want))
	for i := range want {
		byseq[want[i].Seq] = &want[i]
	}
	seen := make(map[uint64]bool, len(want))
	last := map[string]uint64{} // key -> highest seq seen
	for _, r := range recs {
		e := byseq[r.seq]
		if e == nil {
			t.Errorf("record with seq %d not delivered", r.seq)
			continue
		}
		if seen[r.seq] {
			dups++
			continue
		}
		seen[r.seq] = true
		if r.key != e.Key || r.gateway != testGateway || r.topic != "sluice.gw-01."+e.Rule ||
			r.env.Seq != e.Seq || r.env.Gateway != testGateway || r.env.Rule != e.Rule || r.env.Values["n"] != int(e.Seq) {
			t.Errorf("seq %d: record %+v", e.Seq, r)
		}
		if l := last[r.key]; r.seq < l {
			t.Errorf("key %s: seq %d after %d", r.key, r.seq, l)
		}
		last[r.key] = r.seq
	}
	if len(seen) != len(want) {
		t.Errorf("%d distinct seqs delivered, want %d", len(seen), len(want))
	}
	return dups
}

func deliverKafka(t testing.TB, k *Kafka, batch []buffer.Entry) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := k.Deliver(ctx, batch); err != nil {
		t.Fatalf("Deliver: %v", err)
	}
}

func TestKafkaDelivery(t *testing.T) {
	for _, codec := range []Compression{CompressionNone, CompressionGzip, CompressionSnappy, CompressionLZ4, CompressionZstd} {
		t.Run(string(codec), func(t *testing.T) {
			c := startKafka(t)
			k := newTestKafka(t, c.ListenAddrs(), WithCompression(codec))
			all := keyedEntries(1, 2000)
			for i := 0; i < len(all); i += 500 {
				deliverKafka(t, k, all[i:i+500])
			}
			if p, e := k.Published.Load(), k.Errors.Load(); p != 2000 || e != 0 {
				t.Errorf("Published, Errors = %d, %d; want 2000, 0", p, e)
			}
			recs := consumeKafka(t, c.ListenAddrs(), len(all), 30*time.Second)
			if dups := checkKafka(t, recs, all); dups != 0 || len(recs) != len(all) {
				t.Errorf("%d records with %d duplicates, want %d and none", len(recs), dups, len(all))
			}
			// One key, one partition.
			parts := map[string]int32{}
			for _, r := range recs {
				if p, ok := parts[r.topic+"/"+r.key]; ok && p != r.partition {
					t.Errorf("key %s in partitions %d and %d", r.key, p, r.partition)
				}
				parts[r.topic+"/"+r.key] = r.partition
			}
			if !k.Connected() {
				t.Error("not connected after deliveries")
			}
		})
	}
}

// TestKafkaLeaderChangesAndRestart delivers batches while partition leaders
// move and, twice, the whole cluster is stopped and started again on the
// same ports and data directory: nothing is lost and every key's records are
// in order. Deliver is retried on error as the forwarder does.
func TestKafkaLeaderChangesAndRestart(t *testing.T) {
	dir := t.TempDir()
	ports := freePorts(t, 3)
	clusterOpts := []kfake.Opt{kfake.NumBrokers(3), kfake.Ports(ports...), kfake.DataDir(dir), kfake.SeedTopics(3, kafkaTopics...)}
	c, err := kfake.NewCluster(clusterOpts...)
	if err != nil {
		t.Fatal(err)
	}
	addrs := c.ListenAddrs()
	k := newTestKafka(t, addrs, WithDeliveryTimeout(2*time.Second))

	const total, size = 12000, 200
	all := keyedEntries(1, total)
	var (
		mu      sync.Mutex
		cluster = c
	)
	defer func() { mu.Lock(); cluster.Close(); mu.Unlock() }()
	delivered := make(chan int, total/size)
	done := make(chan struct{})
	go func() { // the chaos, paced by the deliveries
		defer close(done)
		for n := range delivered {
			mu.Lock()
			switch {
			case n%10 == 3:
				cluster.ShufflePartitionLeaders()
			case n%10 == 6:
				if err := cluster.MoveTopicPartition(kafkaTopics[0], 0, int32(n%3)); err != nil {
					t.Error(err)
				}
			case n == 20 || n == 45:
				cluster.Close()
				c2, err := kfake.NewCluster(clusterOpts...)
				if err != nil {
					t.Error(err)
				} else {
					cluster = c2
				}
			}
			mu.Unlock()
		}
	}()
	failures := 0
	for i, n := 0, 0; i < total; n++ {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err := k.Deliver(ctx, all[i:i+size])
		cancel()
		if err != nil {
			failures++
			if failures > 200 {
				t.Fatalf("Deliver keeps failing: %v", err)
			}
			continue // the forwarder retries the same batch
		}
		i += size
		delivered <- n
	}
	close(delivered)
	<-done
	mu.Lock()
	addrs = cluster.ListenAddrs()
	mu.Unlock()
	recs := consumeKafka(t, addrs, total, 60*time.Second)
	dups := checkKafka(t, recs, all)
	t.Logf("%d records, %d duplicates, %d failed Deliver calls", len(recs), dups, failures)
	if failures == 0 && dups != 0 {
		t.Errorf("%d duplicates without a failed delivery", dups)
	}
}

func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ls []net.Listener
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

func TestKafkaBrokersDown(t *testing.T) {
	ports := freePorts(t, 1)
	k := newTestKafka(t, []string{fmt.Sprintf("127.0.0.1:%d", ports[0])}, WithDeliveryTimeout(time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	err := k.Deliver(ctx, keyedEntries(1, 10))
	if err == nil {
		t.Fatal("Deliver with no broker returned nil")
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Deliver with no broker took %v", took)
	}
	if k.Connected() || k.Errors.Load() != 1 || k.Published.Load() != 0 {
		t.Errorf("Connected %v, Errors %d, Published %d", k.Connected(), k.Errors.Load(), k.Published.Load())
	}
	t.Logf("no broker: %v (last connect error: %v)", err, k.LastError())

	// The broker comes up on that port: the same uplink delivers.
	c := startKafka(t, kfake.NumBrokers(1), kfake.Ports(ports[0]))
	all := keyedEntries(1, 10)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := k.Deliver(ctx, all)
		cancel()
		if err == nil {
			break
		}
		if k.Errors.Load() > 50 {
			t.Fatalf("Deliver keeps failing: %v", err)
		}
	}
	recs := consumeKafka(t, c.ListenAddrs(), 10, 10*time.Second)
	checkKafka(t, recs, all)
}

func TestKafkaContextCanceled(t *testing.T) {
	c := startKafka(t)
	k := newTestKafka(t, c.ListenAddrs())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := k.Deliver(ctx, keyedEntries(1, 10)); !errors.Is(err, context.Canceled) {
		t.Errorf("Deliver with a canceled context: %v, want context.Canceled", err)
	}
	all := keyedEntries(1, 10)
	deliverKafka(t, k, all)
	recs := consumeKafka(t, c.ListenAddrs(), 10, 10*time.Second)
	checkKafka(t, recs, all)
}

func TestKafkaInvalidTopic(t *testing.T) {
	c := startKafka(t)
	k := newTestKafka(t, c.ListenAddrs())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, rule := range []string{"has space", "slash/", ""} {
		if rule == "" {
			// An empty rule still gives "sluice.gw-01." which is valid;
			// a template of only {rule} does not.
			tmpl, _ := ParseTopic("{rule}")
			k2 := newTestKafka(t, c.ListenAddrs(), WithTopic(tmpl))
			if err := k2.Deliver(ctx, entries(1, 2, rule)); !errors.Is(err, ErrInvalidTopic) {
				t.Errorf("empty topic: %v, want ErrInvalidTopic", err)
			}
			continue
		}
		err := k.Deliver(ctx, entries(1, 3, rule))
		if p, ok := IsPermanent(err); !ok || p.Seq != 1 || !errors.Is(err, ErrInvalidTopic) {
			t.Errorf("rule %q: Deliver returned %v, want ErrInvalidTopic for seq 1 in a PermanentError", rule, err)
		}
	}
}

// TestKafkaRecordTooLarge: a record the client could never produce is named
// in a PermanentError; the records before it are delivered.
func TestKafkaRecordTooLarge(t *testing.T) {
	c := startKafka(t)
	k := newTestKafka(t, c.ListenAddrs())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	batch := entries(1, 4, "r0")
	batch[2].Payload = fmt.Appendf(nil, `{"pad":%q}`, make([]byte, kafkaMaxRecordBytes))
	err := k.Deliver(ctx, batch)
	if p, ok := IsPermanent(err); !ok || p.Seq != 3 || !errors.Is(err, ErrRecordTooLarge) {
		t.Fatalf("Deliver returned %v, want ErrRecordTooLarge for seq 3 in a PermanentError", err)
	}
	if got := k.Published.Load(); got != 2 {
		t.Errorf("Published = %d, want the 2 records before it", got)
	}
}

func TestNewKafkaErrors(t *testing.T) {
	bad, err := ParseTemplate("a/{rule}")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		brokers []string
		opts    []KafkaOption
		is      error
	}{
		{"no gateway", []string{"127.0.0.1:1"}, nil, ErrNoGateway},
		{"no brokers", nil, []KafkaOption{WithKafkaGateway("g")}, nil},
		{"bad topic", []string{"127.0.0.1:1"}, []KafkaOption{WithKafkaGateway("g"), WithTopic(bad)}, ErrInvalidTemplate},
		{"bad codec", []string{"127.0.0.1:1"}, []KafkaOption{WithKafkaGateway("g"), WithCompression("brotli")}, nil},
		{"bad sasl", []string{"127.0.0.1:1"}, []KafkaOption{WithKafkaGateway("g"), WithSASL("GSSAPI", "u", "p")}, nil},
		{"timeout", []string{"127.0.0.1:1"}, []KafkaOption{WithKafkaGateway("g"), WithDeliveryTimeout(0)}, nil},
	}
	for _, tt := range tests {
		k, err := NewKafka("cloud", tt.brokers, tt.opts...)
		if err == nil {
			k.Close()
			t.Errorf("%s: no error", tt.name)
			continue
		}
		if tt.is != nil && !errors.Is(err, tt.is) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.is)
		}
	}
}

func TestKafkaSASL(t *testing.T) {
	for _, mech := range []string{SASLPlain, SASLScramSHA256, SASLScramSHA512} {
		t.Run(mech, func(t *testing.T) {
			c := startKafka(t, kfake.EnableSASL(), kfake.Superuser(mech, "gw", "s3cret"))
			k := newTestKafka(t, c.ListenAddrs(), WithSASL(mech, "gw", "s3cret"))
			all := keyedEntries(1, 50)
			deliverKafka(t, k, all)
			consumer := kgo.SASL(saslMechanism(mech, "gw", "s3cret"))
			checkKafka(t, consumeKafka(t, c.ListenAddrs(), 50, 10*time.Second, consumer), all)

			wrong := newTestKafka(t, c.ListenAddrs(), WithSASL(mech, "gw", "wrong"), WithDeliveryTimeout(time.Second))
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := wrong.Deliver(ctx, keyedEntries(51, 5)); err == nil {
				t.Error("Deliver with a wrong password returned nil")
			}
		})
	}
}

// saslMechanism returns the franz-go mechanism WithSASL builds, for the
// test's consumer.
func saslMechanism(mech, user, pass string) sasl.Mechanism {
	var c kafkaConfig
	WithSASL(mech, user, pass)(&c)
	return c.sasl
}

func TestKafkaTLS(t *testing.T) {
	dir := t.TempDir()
	serverTLS, files := testCerts(t, dir)
	c := startKafka(t, kfake.TLS(serverTLS))
	cfg, err := LoadTLS(files)
	if err != nil {
		t.Fatal(err)
	}
	k := newTestKafka(t, c.ListenAddrs(), WithKafkaTLS(cfg))
	all := keyedEntries(1, 50)
	deliverKafka(t, k, all)
	checkKafka(t, consumeKafka(t, c.ListenAddrs(), 50, 10*time.Second, kgo.DialTLSConfig(cfg.Clone())), all)

	// Without the CA the server's certificate is not trusted.
	noCA := newTestKafka(t, c.ListenAddrs(), WithKafkaTLS(&tls.Config{MinVersion: tls.VersionTLS12}), WithDeliveryTimeout(time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := noCA.Deliver(ctx, keyedEntries(51, 5)); err == nil {
		t.Error("Deliver to an untrusted server returned nil")
	}
}

// testCerts makes a CA, a server certificate for 127.0.0.1 and a client
// certificate, writes the CA and the client's files into dir, and returns
// the server's TLS config (which requires and verifies client certificates)
// and the client's files.
func testCerts(t testing.TB, dir string) (*tls.Config, TLSFiles) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sluice test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	leaf := func(serial int64, server bool) (tls.Certificate, []byte, []byte) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "sluice test"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}
		if server {
			tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
			tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
			tmpl.DNSNames = []string{"localhost"}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
		keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		return pair, certPEM, keyPEM
	}
	serverPair, _, _ := leaf(2, true)
	_, clientCert, clientKey := leaf(3, false)
	files := TLSFiles{
		CAFile:   filepath.Join(dir, "ca.pem"),
		CertFile: filepath.Join(dir, "client.pem"),
		KeyFile:  filepath.Join(dir, "client-key.pem"),
	}
	for name, b := range map[string][]byte{
		files.CAFile:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		files.CertFile: clientCert,
		files.KeyFile:  clientKey,
	} {
		if err := os.WriteFile(name, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &tls.Config{
		Certificates: []tls.Certificate{serverPair},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}, files
}

func TestLoadTLSErrors(t *testing.T) {
	dir := t.TempDir()
	_, files := testCerts(t, dir)
	junk := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(junk, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]TLSFiles{
		"missing CA":   {CAFile: filepath.Join(dir, "nope.pem")},
		"junk CA":      {CAFile: junk},
		"cert only":    {CertFile: files.CertFile},
		"key mismatch": {CertFile: files.CertFile, KeyFile: junk},
		"missing cert": {CertFile: filepath.Join(dir, "nope.pem"), KeyFile: files.KeyFile},
	} {
		if _, err := LoadTLS(f); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := LoadTLS(files); err != nil {
		t.Errorf("good files: %v", err)
	}
}
