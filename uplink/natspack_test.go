package uplink

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/nats-io/nats.go/jetstream"
)

// unpack decodes the body of a packed message into its envelopes.
func unpack(t *testing.T, hdr map[string][]string, data []byte) []envelope {
	t.Helper()
	var r io.Reader = bytes.NewReader(data)
	switch enc := first(hdr["Content-Encoding"]); enc {
	case "":
	case "zstd":
		d, err := zstd.NewReader(r)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		r = d
	case "gzip":
		g, err := gzip.NewReader(r)
		if err != nil {
			t.Fatal(err)
		}
		r = g
	default:
		t.Fatalf("Content-Encoding %q", enc)
	}
	var envs []envelope
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		var e envelope
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		envs = append(envs, e)
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("body: %v", err)
	}
	return envs
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// TestNATSPacked delivers 1,000 entries of three rules packed 64 to a
// message, with each compression: every entry arrives once, in seq order
// per subject, on its rule's subject, with the pack headers; the same batch
// again is dropped by the stream as duplicates.
func TestNATSPacked(t *testing.T) {
	for _, comp := range []string{"none", "zstd", "gzip"} {
		t.Run(comp, func(t *testing.T) {
			s := startServer(t, -1, true, t.TempDir())
			_, js := connect(t, s.ClientURL())
			st := createStream(t, js, "PACKED", "sluice.>")
			u := newTestNATS(t, s.ClientURL(), WithMaxInFlight(4), WithPack(Pack{MaxRecords: 64, Compression: comp}))
			eventually(t, 10*time.Second, "connected", u.Connected)

			batch := entries(1, 1000)
			deliver(t, u, batch)
			// 334, 333 and 333 entries per rule: 5 packs of 64 and one of
			// the rest each.
			const wantMsgs = 18
			if got := streamMsgs(t, st); got != wantMsgs {
				t.Fatalf("stream has %d messages, want %d", got, wantMsgs)
			}
			if p, d, e := u.Published.Load(), u.Duplicates.Load(), u.Errors.Load(); p != 1000 || d != 0 || e != 0 {
				t.Errorf("Published, Duplicates, Errors = %d, %d, %d; want 1000, 0, 0", p, d, e)
			}

			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			seen := map[uint64]bool{}
			last := map[string]uint64{} // subject -> last seq
			for i := uint64(1); i <= wantMsgs; i++ {
				m, err := st.GetMsg(ctx, i)
				if err != nil {
					t.Fatalf("get stream seq %d: %v", i, err)
				}
				envs := unpack(t, m.Header, m.Data)
				if got := m.Header.Get("Sluice-Records"); got != strconv.Itoa(len(envs)) {
					t.Errorf("message %d: Sluice-Records %q, body holds %d", i, got, len(envs))
				}
				if len(envs) == 0 || len(envs) > 64 {
					t.Fatalf("message %d holds %d envelopes", i, len(envs))
				}
				wantID := fmt.Sprintf("%s-%d-%d", testGateway, envs[0].Seq, envs[len(envs)-1].Seq)
				if got := m.Header.Get(jetstream.MsgIDHeader); got != wantID {
					t.Errorf("message %d: Nats-Msg-Id %q, want %q", i, got, wantID)
				}
				if m.Header.Get("Content-Type") != "application/x-ndjson" {
					t.Errorf("message %d: Content-Type %q", i, m.Header.Get("Content-Type"))
				}
				for _, e := range envs {
					if seen[e.Seq] {
						t.Errorf("seq %d twice", e.Seq)
					}
					seen[e.Seq] = true
					if want := batch[e.Seq-1]; e.Gateway != testGateway || e.Rule != want.Rule || e.Values["n"] != int(e.Seq) {
						t.Errorf("seq %d: %+v", e.Seq, e)
					}
					if m.Subject != "sluice.gw-01."+e.Rule {
						t.Errorf("seq %d of rule %s on subject %s", e.Seq, e.Rule, m.Subject)
					}
					if e.Seq <= last[m.Subject] {
						t.Errorf("seq %d on %s after seq %d", e.Seq, m.Subject, last[m.Subject])
					}
					last[m.Subject] = e.Seq
				}
			}
			if len(seen) != 1000 {
				t.Errorf("%d distinct seqs, want 1000", len(seen))
			}

			deliver(t, u, batch)
			if got := streamMsgs(t, st); got != wantMsgs {
				t.Fatalf("after redelivery the stream has %d messages, want %d", got, wantMsgs)
			}
			if d := u.Duplicates.Load(); d != 1000 {
				t.Errorf("Duplicates = %d, want 1000", d)
			}
		})
	}
}

// TestNATSPackBytesBound cuts packs by their uncompressed size too.
func TestNATSPackBytesBound(t *testing.T) {
	s := startServer(t, -1, true, t.TempDir())
	_, js := connect(t, s.ClientURL())
	st := createStream(t, js, "PACKED", "sluice.>")
	batch := entries(1, 100, "r0")
	size := len(NewEnvelope(testGateway).Append(nil, &batch[0])) + 1
	// Room for 10 envelopes of the first's size (later ones are no longer).
	u := newTestNATS(t, s.ClientURL(), WithPack(Pack{MaxRecords: 1000, MaxBytes: 10*size + size/2}))
	eventually(t, 10*time.Second, "connected", u.Connected)
	deliver(t, u, batch)
	if got := streamMsgs(t, st); got != 10 {
		t.Errorf("stream has %d messages, want 10", got)
	}
}

func TestNATSPackBadCompression(t *testing.T) {
	_, err := NewNATS("cloud", "nats://127.0.0.1:1", WithGateway(testGateway), WithPack(Pack{MaxRecords: 10, Compression: "brotli"}))
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte(`compression "brotli"`)) {
		t.Errorf("err = %v, want one naming the compression", err)
	}
}
