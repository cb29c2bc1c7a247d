package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// failAfter bounds every wait in these tests; reaching it is a failure, never
// a synchronisation.
const failAfter = 20 * time.Second

// allowHook lets every client connect and use every topic. It is mochi's
// auth.AllowHook, restated because that package pulls gopkg.in/yaml.v3 into
// the module graph for nothing.
type allowHook struct{ mochi.HookBase }

func (h *allowHook) ID() string { return "allow-all" }

func (h *allowHook) Provides(b byte) bool {
	return b == mochi.OnConnectAuthenticate || b == mochi.OnACLCheck
}

func (h *allowHook) OnConnectAuthenticate(*mochi.Client, packets.Packet) bool { return true }

func (h *allowHook) OnACLCheck(*mochi.Client, string, bool) bool { return true }

// startBroker runs an in-process mochi broker on a free 127.0.0.1 port and
// returns it with its tcp:// URL.
func startBroker(t *testing.T) (*mochi.Server, string) {
	t.Helper()
	srv, broker, stop := startStoppableBroker(t)
	t.Cleanup(stop)
	return srv, broker
}

// startStoppableBroker starts a mochi broker and returns a function that
// stops it, once however often it is called.
func startStoppableBroker(t *testing.T) (*mochi.Server, string, func()) {
	t.Helper()
	srv := mochi.New(&mochi.Options{InlineClient: true, Logger: slog.New(slog.DiscardHandler)})
	if err := srv.AddHook(new(allowHook), nil); err != nil {
		t.Fatal(err)
	}
	l := listeners.NewTCP(listeners.Config{ID: "t", Address: "127.0.0.1:0"})
	if err := srv.AddListener(l); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	return srv, "tcp://" + l.Address(), func() { once.Do(func() { srv.Close() }) }
}

// counter is an MQTT subscriber that counts W1 messages per device and
// remembers each (device, temperature) pair, in arrival order per device.
type counter struct {
	mu       sync.Mutex
	total    int
	perDev   map[string]int
	values   map[string][]string // device -> temperatures as sent
	seen     map[string]bool     // device/ts, to catch duplicates
	dups     int
	bad      []string
	reached  chan struct{} // closed when total reaches want
	sentinel chan struct{} // closed when the sentinel arrives
	want     int
	grew     *sync.Cond // broadcast when total grows, or waitTotal's time is up
	late     bool       // waitTotal's time is up
}

const sentinelTopic = "sensors/sentinel/telemetry"

func subscribe(t *testing.T, broker string, want int) *counter {
	t.Helper()
	c := &counter{
		perDev: map[string]int{}, values: map[string][]string{}, seen: map[string]bool{},
		reached: make(chan struct{}), sentinel: make(chan struct{}), want: want,
	}
	c.grew = sync.NewCond(&c.mu)
	opts := mqtt.NewClientOptions().AddBroker(broker).SetClientID("counter").SetOrderMatters(true)
	cl := mqtt.NewClient(opts)
	if tok := cl.Connect(); !tok.WaitTimeout(failAfter) || tok.Error() != nil {
		t.Fatalf("subscriber connect: %v", tok.Error())
	}
	t.Cleanup(func() { cl.Disconnect(0) })
	tok := cl.Subscribe("sensors/+/telemetry", 1, func(_ mqtt.Client, m mqtt.Message) {
		if m.Topic() == sentinelTopic {
			close(c.sentinel)
			return
		}
		var p struct {
			Device      string
			Temperature json.Number
			Humidity    float64
			TS          int64
		}
		err := json.Unmarshal(m.Payload(), &p)
		c.mu.Lock()
		defer c.mu.Unlock()
		if err != nil || m.Topic() != "sensors/"+p.Device+"/telemetry" {
			c.bad = append(c.bad, fmt.Sprintf("%s %s %v", m.Topic(), m.Payload(), err))
			return
		}
		key := p.Device + "/" + strconv.FormatInt(p.TS, 10)
		if c.seen[key] {
			c.dups++
		}
		c.seen[key] = true
		c.perDev[p.Device]++
		c.values[p.Device] = append(c.values[p.Device], p.Temperature.String())
		c.total++
		c.grew.Broadcast()
		if c.total == c.want {
			close(c.reached)
		}
	})
	if !tok.WaitTimeout(failAfter) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	return c
}

// waitTotal waits until n messages were counted. The broker acks a QoS 1
// message before it passes it on (mochi writes the PUBACK first), so the
// simulator can have the ack of its last message before the subscriber has
// the message, and a sentinel published then can overtake it.
func (c *counter) waitTotal(t *testing.T, n int) {
	t.Helper()
	timer := time.AfterFunc(failAfter, func() { c.mu.Lock(); c.late = true; c.grew.Broadcast(); c.mu.Unlock() })
	defer timer.Stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.total < n && !c.late {
		c.grew.Wait()
	}
	if c.total < n {
		t.Fatalf("subscriber got %d of %d messages", c.total, n)
	}
}

// settle publishes a sentinel through the broker's inline client and waits
// for it, so that whatever the broker passed on before it (a duplicate, a
// message too many) is counted when the counts are asserted. Call it once
// the expected count arrived (reached, waitTotal): the broker acks a message
// before it passes it on, so the sentinel can overtake the last ones.
func (c *counter) settle(t *testing.T, srv *mochi.Server) {
	t.Helper()
	if err := srv.Publish(sentinelTopic, []byte("{}"), false, 1); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.sentinel:
	case <-time.After(failAfter):
		t.Fatal("sentinel not received")
	}
}

func testConfig(broker string) config {
	return config{
		Broker: broker, Devices: 50, Rate: 20000, QoS: 1,
		Topic: "sensors/{device}/telemetry", Seed: 1, ClientID: "sim", Connections: 1, Quiet: true,
	}
}

// TestEndToEnd runs the simulator against a real broker: a subscriber gets
// exactly --count messages, 40 from each of the 50 devices, with the values
// the simulator recorded in --values-out, in order per device.
func TestEndToEnd(t *testing.T) {
	for _, tc := range []struct {
		name        string
		qos, conns  int
		count, each int
		nagle, raw  bool
	}{
		{"qos1", 1, 1, 2000, 40, false, false},
		{"qos1-3conns", 1, 3, 2000, 40, false, false},
		{"qos0-4conns", 0, 4, 1000, 20, false, false},
		{"qos1-nagle", 1, 2, 2000, 40, true, false},
		{"qos1-raw", 1, 3, 2000, 40, false, true},
		{"qos1-raw-nagle", 1, 1, 2000, 40, true, true},
		{"qos0-raw", 0, 2, 1000, 20, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, broker := startBroker(t)
			sub := subscribe(t, broker, tc.count)

			cfg := testConfig(broker)
			cfg.QoS, cfg.Connections, cfg.Count, cfg.Nagle, cfg.Raw = tc.qos, tc.conns, uint64(tc.count), tc.nagle, tc.raw
			cfg.ValuesOut = filepath.Join(t.TempDir(), "values")
			cfg.AckedOut = filepath.Join(t.TempDir(), "acked")
			var log bytes.Buffer
			sum, err := run(context.Background(), cfg, newConsole(&log))
			if err != nil {
				t.Fatalf("run: %v\n%s", err, log.String())
			}
			wantAcked := uint64(tc.count)
			if tc.qos == 0 {
				wantAcked = 0
			}
			if sum.Sent != uint64(tc.count) || sum.Acked != wantAcked || sum.Errors != 0 || !sum.OK() || sum.Interrupted {
				t.Fatalf("summary %s (ok %v, interrupted %v), want sent=%d acked=%d errors=0\n%s",
					sum, sum.OK(), sum.Interrupted, tc.count, wantAcked, log.String())
			}

			select {
			case <-sub.reached:
			case <-time.After(failAfter):
				sub.mu.Lock()
				t.Fatalf("subscriber got %d of %d messages", sub.total, tc.count)
			}
			sub.settle(t, srv)

			sub.mu.Lock()
			defer sub.mu.Unlock()
			if sub.total != tc.count || sub.dups != 0 || len(sub.bad) != 0 {
				t.Fatalf("subscriber: %d messages, %d duplicates, bad: %q", sub.total, sub.dups, sub.bad)
			}
			if len(sub.perDev) != 50 {
				t.Fatalf("messages from %d devices, want 50", len(sub.perDev))
			}
			for dev, n := range sub.perDev {
				if n != tc.each {
					t.Errorf("%s: %d messages, want %d", dev, n, tc.each)
				}
			}

			// --values-out lists the same readings; per device in order.
			data, err := os.ReadFile(cfg.ValuesOut)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
			if len(lines) != tc.count {
				t.Fatalf("values file: %d lines, want %d", len(lines), tc.count)
			}
			fromFile := map[string][]string{}
			for _, l := range lines {
				dev, temp, ok := strings.Cut(l, " ")
				if !ok {
					t.Fatalf("values file line %q", l)
				}
				fromFile[dev] = append(fromFile[dev], temp)
			}
			for dev, got := range sub.values {
				if !slices.Equal(got, fromFile[dev]) {
					t.Fatalf("%s: received temperatures %v, values file %v", dev, got, fromFile[dev])
				}
			}

			// --acked-out: a line per acknowledged message, each device's
			// messages once, in the order sent.
			data, err = os.ReadFile(cfg.AckedOut)
			if err != nil {
				t.Fatal(err)
			}
			acked := strings.Fields(string(data))
			if len(acked) != 2*int(wantAcked) {
				t.Fatalf("acked file: %d fields, want %d", len(acked), 2*wantAcked)
			}
			lastTS := map[string]int64{}
			for i := 0; i < len(acked); i += 2 {
				ts, err := strconv.ParseInt(acked[i+1], 10, 64)
				if err != nil || ts <= lastTS[acked[i]] {
					t.Fatalf("acked file: %s %s after ts %d", acked[i], acked[i+1], lastTS[acked[i]])
				}
				lastTS[acked[i]] = ts
			}
			if tc.qos == 1 && len(lastTS) != 50 {
				t.Fatalf("acked file: %d devices, want 50", len(lastTS))
			}
		})
	}
}

// TestRawBrokerLost: the broker goes away while a raw publisher sends QoS 1.
// The run ends by itself, and each message is either acknowledged or counted
// as an error, exactly once.
func TestRawBrokerLost(t *testing.T) {
	_, broker, stop := startStoppableBroker(t)
	t.Cleanup(stop)
	sub := subscribe(t, broker, 500)
	cfg := testConfig(broker)
	cfg.Raw, cfg.Connections, cfg.Count, cfg.Rate = true, 2, 10000, 5000
	done := make(chan struct{})
	var sum summary
	var err error
	var log bytes.Buffer
	go func() {
		defer close(done)
		sum, err = run(context.Background(), cfg, newConsole(&log))
	}()
	select {
	case <-sub.reached:
	case <-time.After(failAfter):
		t.Fatal("the subscriber got no 500 messages")
	}
	stop()
	select {
	case <-done:
	case <-time.After(failAfter):
		t.Fatal("the run did not end after the broker went away")
	}
	if err != nil {
		t.Fatal(err)
	}
	if sum.Acked < 500 || sum.Errors == 0 || sum.Acked+sum.Errors != 10000 || sum.OK() {
		t.Fatalf("summary %s: want at least 500 acked, the rest of 10000 errors", sum)
	}
	if !strings.Contains(log.String(), "lost") {
		t.Errorf("no connection loss logged:\n%s", log.String())
	}
}

// TestRawWriteAfterIdle: a burst larger than the write buffer, long after
// the last one, is written (each write has its own deadline).
func TestRawWriteAfterIdle(t *testing.T) {
	_, broker := startBroker(t)
	for _, qos := range []byte{1, 0} {
		p, err := newRawPublisher(broker, fmt.Sprintf("idle-%d", qos), 1, qos, false, t.Logf)
		if err != nil {
			t.Fatal(err)
		}
		p.writeTimeout = 200 * time.Millisecond
		if err := p.Connect(context.Background()); err != nil {
			t.Fatal(err)
		}
		payload := bytes.Repeat([]byte("x"), 200)
		burst := func() {
			for range 300 { // 60 KB: the buffer writes several times by itself
				if err := p.Publish(context.Background(), 0, "sensors/d/telemetry", payload, 0, 0); err != nil {
					t.Fatalf("qos %d: %v", qos, err)
				}
			}
			p.Flush()
		}
		burst()
		time.Sleep(3 * p.writeTimeout) // the idle gap: past any deadline the first burst set
		// A message larger than the buffer goes straight to the socket.
		if err := p.Publish(context.Background(), 0, "sensors/d/telemetry", bytes.Repeat([]byte("y"), 3*rawBufSize), 0, 0); err != nil {
			t.Fatalf("qos %d: large message: %v", qos, err)
		}
		burst()
		p.Close(failAfter)
		wantAcked := uint64(601)
		if qos == 0 {
			wantAcked = 0
		}
		if p.Sent() != 601 || p.Acked() != wantAcked || p.Errors() != 0 {
			t.Errorf("qos %d: sent %d acked %d errors %d (%s), want 601, %d, 0", qos, p.Sent(), p.Acked(), p.Errors(), p.FirstError(), wantAcked)
		}
	}
}

// rawBroker listens for one raw publisher, answers its CONNECT and hands
// the connection to serve (on a goroutine of its own); the publisher
// returned is connected to it, at QoS 0.
func rawBroker(t *testing.T, serve func(c net.Conn, r *bufio.Reader)) *rawPublisher {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		r := bufio.NewReader(c)
		var scratch [maxRawPacket]byte
		readPacket(r, scratch[:])      // CONNECT
		c.Write([]byte{0x20, 2, 0, 0}) // CONNACK
		serve(c, r)
	}()
	p, err := newRawPublisher("tcp://"+l.Addr().String(), t.Name(), 1, 0, false, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRawLostWithBufferedQoS0: QoS 0 messages still in the buffer when the
// broker closed the connection are counted as errors, not as sent.
func TestRawLostWithBufferedQoS0(t *testing.T) {
	closed := make(chan struct{})
	p := rawBroker(t, func(c net.Conn, _ *bufio.Reader) { // closes the connection
		<-closed
		c.Close()
	})
	if err := p.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if err := p.Publish(context.Background(), 0, "t", []byte("hello"), 0, 0); err != nil {
			t.Fatal(err)
		}
	}
	close(closed)
	<-p.conns[0].readerDone // the reader saw the end of the connection
	p.Flush()
	p.Close(time.Second)
	if p.Sent() != 0 || p.Errors() != 10 {
		t.Errorf("sent %d, errors %d (%s): want 0 and 10, the buffer was never written", p.Sent(), p.Errors(), p.FirstError())
	}
}

// TestRawPartialWrite: a broker stops reading, so a write times out part of
// the way through the buffer. The QoS 0 messages counted as sent are
// exactly the complete ones the broker gets; the rest count as errors.
func TestRawPartialWrite(t *testing.T) {
	stalled := make(chan struct{})
	got := make(chan int, 1)
	p := rawBroker(t, func(c net.Conn, r *bufio.Reader) { // stalls, then counts the PUBLISHes it got
		defer c.Close()
		<-stalled
		n := 0
		for {
			h, err := r.ReadByte()
			if err != nil {
				break
			}
			size, mul := 0, 1
			for i := 0; ; i++ {
				d, err := r.ReadByte()
				if err != nil || i == 4 {
					got <- n
					return
				}
				size += int(d&0x7f) * mul
				if d&0x80 == 0 {
					break
				}
				mul *= 128
			}
			if _, err := io.CopyN(io.Discard, r, int64(size)); err != nil {
				break
			}
			if h&0xf0 == 0x30 {
				n++
			}
		}
		got <- n
	})
	p.writeTimeout = 50 * time.Millisecond
	if err := p.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	payload := make([]byte, 200)
	offered := 0
	for offered < 1_000_000 {
		offered++
		if err := p.Publish(context.Background(), 0, "t/x", payload, 0, 0); err != nil {
			break
		}
	}
	close(stalled)
	p.Close(time.Second)
	n := <-got
	if offered == 1_000_000 || uint64(n) != p.Sent() || p.Sent()+p.Errors() != uint64(offered) {
		t.Errorf("offered %d: sent %d, errors %d (%s); the broker got %d complete messages", offered, p.Sent(), p.Errors(), p.FirstError(), n)
	}
}

// TestReadPacket reads PUBACKs, a CONNACK and a remaining length of each
// size, and refuses what a raw connection must not get.
func TestReadPacket(t *testing.T) {
	var in []byte
	for _, n := range []int{0, 2, 127, 128, 1000} {
		in = append(in, 0x42)
		in = appendLength(in, n)
		in = append(in, make([]byte, n)...)
	}
	r := bufio.NewReader(bytes.NewReader(in))
	buf := make([]byte, maxRawPacket)
	for _, n := range []int{0, 2, 127, 128, 1000} {
		typ, body, err := readPacket(r, buf)
		if err != nil || typ != 0x40 || len(body) != n {
			t.Fatalf("length %d: type %#x, %d bytes, %v", n, typ, len(body), err)
		}
	}
	for name, in := range map[string][]byte{
		"too long":    append([]byte{0x30}, appendLength(nil, maxRawPacket+1)...),
		"length of 5": {0x40, 0x80, 0x80, 0x80, 0x80, 0x01},
		"short body":  {0x40, 0x02, 0x00},
		"no length":   {0x40},
		"huge length": {0x30, 0xff, 0xff, 0xff, 0x7f},
	} {
		if _, _, err := readPacket(bufio.NewReader(bytes.NewReader(in)), buf); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// FuzzReadPacket: any input gives packets or an error, never a panic or a
// body larger than maxRawPacket.
func FuzzReadPacket(f *testing.F) {
	f.Add([]byte{0x40, 0x02, 0x00, 0x01})
	f.Add([]byte{0x20, 0x02, 0x00, 0x00, 0x40, 0x02, 0x12, 0x34})
	f.Add([]byte{0x40, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bufio.NewReader(bytes.NewReader(in))
		buf := make([]byte, maxRawPacket)
		for range len(in) + 1 {
			_, body, err := readPacket(r, buf)
			if err != nil {
				return
			}
			if len(body) > maxRawPacket {
				t.Fatalf("body of %d bytes", len(body))
			}
		}
	})
}

// TestInterrupt cancels an unbounded run (as SIGINT does) once the subscriber
// has seen 500 messages: the run stops, every message it sent is
// acknowledged, and the subscriber gets exactly those.
func TestInterrupt(t *testing.T) {
	srv, broker := startBroker(t)
	sub := subscribe(t, broker, 500)
	cfg := testConfig(broker)
	cfg.Rate = 5000

	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-sub.reached
		cancel()
	}()
	sum, err := run(ctx, cfg, newConsole(io.Discard))
	if err != nil {
		t.Fatal(err)
	}
	if !sum.Interrupted || sum.Sent < 500 || sum.Acked != sum.Sent || sum.Errors != 0 || !sum.OK() {
		t.Fatalf("summary %s (interrupted %v ok %v)", sum, sum.Interrupted, sum.OK())
	}
	sub.waitTotal(t, int(sum.Sent))
	sub.settle(t, srv)
	sub.mu.Lock()
	defer sub.mu.Unlock()
	if uint64(sub.total) != sum.Sent {
		t.Fatalf("subscriber got %d messages, simulator sent %d", sub.total, sum.Sent)
	}
}

// TestReproducible checks that with a fixed --seed and --start-ts-ms two runs
// publish byte-identical payloads.
func TestReproducible(t *testing.T) {
	runOnce := func() []string {
		srv, broker := startBroker(t)
		var mu sync.Mutex
		var got []string
		all := make(chan struct{})
		if err := srv.Subscribe("sensors/#", 1, func(_ *mochi.Client, _ packets.Subscription, pk packets.Packet) {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, string(pk.Payload))
			if len(got) == 300 {
				close(all)
			}
		}); err != nil {
			t.Fatal(err)
		}
		cfg := testConfig(broker)
		cfg.Count, cfg.Devices, cfg.Rate = 300, 7, 3000
		cfg.StartTSMs, cfg.StartTSSet = 1732500000000, true
		if sum, err := run(context.Background(), cfg, newConsole(io.Discard)); err != nil || !sum.OK() {
			t.Fatalf("run: %s %v", sum, err)
		}
		select {
		case <-all:
		case <-time.After(failAfter):
			t.Fatal("inline subscriber did not get 300 messages")
		}
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(got)
	}
	a, b := runOnce(), runOnce()
	if !slices.Equal(a, b) {
		t.Fatalf("runs differ:\n%s\n%s", a[:3], b[:3])
	}
	if want := `{"device":"dev-0","temperature":`; !strings.HasPrefix(a[0], want) || !strings.HasSuffix(a[0], `,"ts":1732500000000}`) {
		t.Fatalf("first payload %s", a[0])
	}
}

func TestFlags(t *testing.T) {
	cfg, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Broker != "tcp://127.0.0.1:1883" || cfg.Devices != 50 || cfg.Rate != 100 || cfg.QoS != 0 ||
		cfg.Topic != "sensors/{device}/telemetry" || cfg.Seed != 1 || cfg.Connections != 1 ||
		cfg.ClientID != "firmware-sim-"+strconv.Itoa(os.Getpid()) || cfg.StartTSSet {
		t.Fatalf("defaults: %+v", cfg)
	}
	cfg, err = parseFlags([]string{"--rate", "333.3", "--start-ts-ms", "0", "--duration", "5s", "--qos", "1", "--utc-offset", "-5h30m"}, io.Discard)
	if err != nil || cfg.Rate != 333.3 || !cfg.StartTSSet || cfg.Duration != 5*time.Second || cfg.QoS != 1 || cfg.UTCOffset != -330*time.Minute {
		t.Fatalf("%+v %v", cfg, err)
	}

	for _, args := range [][]string{
		{"--rate", "0"}, {"--rate", "-1"}, {"--rate", "NaN"}, {"--rate", "Inf"}, {"--rate", "x"},
		{"--devices", "0"}, {"--qos", "2"}, {"--count", "-1"}, {"--duration", "-1s"},
		{"--connections", "0"}, {"--devices", "2", "--connections", "3"},
		{"--topic", "a/+/b"}, {"--topic", ""}, {"--broker", "localhost"}, {"--client-id", ""},
		{"--start-ts-ms", "-5"}, {"--utc-offset", "15h"}, {"--nagle", "--broker", "ssl://broker:8883"},
		{"--raw", "--cmd-topic", "", "--broker", "ws://broker:8080/mqtt"}, {"--raw"}, {"--raw", "--cmd-topic", "", "--storm-every", "1s", "--storm-down", "100ms"}, {"--utc-offset", "-14h1m"}, {"--nope"}, {"extra"},
	} {
		var out bytes.Buffer
		if code := realMain(args, io.Discard, &out); code != 2 || out.Len() == 0 {
			t.Errorf("%q: exit %d, output %q; want 2 and a message", args, code, out.String())
		}
	}
	if code := realMain([]string{"-h"}, io.Discard, io.Discard); code != 0 {
		t.Errorf("-h: exit %d", code)
	}
}

// TestIsPlainTCP: only the schemes paho opens with a plain TCP dial are
// dialled by the simulator (through a read buffer); TLS and WebSocket
// brokers keep paho's own dialer.
func TestIsPlainTCP(t *testing.T) {
	for broker, want := range map[string]bool{
		"tcp://127.0.0.1:1883": true, "mqtt://broker:1883": true,
		"ssl://broker:8883": false, "tls://broker:8883": false, "mqtts://broker:8883": false,
		"ws://broker:8080/mqtt": false, "wss://broker/mqtt": false, "unix:///run/mqtt.sock": false,
	} {
		if got := isPlainTCP(broker); got != want {
			t.Errorf("%s: isPlainTCP %v, want %v", broker, got, want)
		}
	}
}
