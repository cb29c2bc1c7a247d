package buffer

import (
	"bytes"
	"fmt"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

func entries(n int, routes ...string) []Entry {
	es := make([]Entry, n)
	for i := range es {
		es[i] = Entry{Rule: "r", Key: fmt.Sprintf("dev-%d", i), Routes: routes, Payload: []byte(fmt.Sprintf(`{"rule":"r","i":%d}`, i))}
	}
	return es
}

func TestCommitReadAckReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buf.db")
	b, err := Open(path, Options{Uplinks: []string{"cloud"}})
	if err != nil {
		t.Fatal(err)
	}
	c := Commit{Entries: entries(5), State: []StateChange{{Scope: "rule/x", Puts: []KV{{[]byte("a"), []byte("1")}, {[]byte("b"), []byte("2")}}}}}
	if err := b.Commit(&c); err != nil {
		t.Fatal(err)
	}
	for i, e := range c.Entries {
		if e.Seq != uint64(i+1) {
			t.Fatalf("entry %d seq %d", i, e.Seq)
		}
	}
	got, scanned, err := b.Read("cloud", Position{}, 3, nil)
	if err != nil || len(got) != 3 || scanned.Normal != 3 {
		t.Fatalf("read: %d entries, scanned %d, %v", len(got), scanned, err)
	}
	for i, e := range got {
		if e.Seq != uint64(i+1) || string(e.Payload) != fmt.Sprintf(`{"rule":"r","i":%d}`, i) || e.Key != fmt.Sprintf("dev-%d", i) || e.Rule != "r" {
			t.Errorf("entry %d: %+v %s", i, e, e.Payload)
		}
	}
	if err := b.Ack("cloud", Position{Normal: 3}); err != nil {
		t.Fatal(err)
	}
	if b.Records() != 2 {
		t.Errorf("records %d after ack, want 2", b.Records())
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	b, err = Open(path, Options{Uplinks: []string{"cloud"}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.LastSeq() != 5 || b.Records() != 2 {
		t.Fatalf("after reopen: last seq %d, records %d", b.LastSeq(), b.Records())
	}
	cur, _ := b.Cursor("cloud")
	got, _, _ = b.Read("cloud", cur, 100, nil)
	if len(got) != 2 || got[0].Seq != 4 || cur.Normal != 3 {
		t.Fatalf("after reopen read %+v", got)
	}
	c = Commit{Entries: entries(1)}
	if err := b.Commit(&c); err != nil || c.Entries[0].Seq != 6 {
		t.Fatalf("seq after reopen: %d, %v", c.Entries[0].Seq, err)
	}
	kvs, err := b.LoadState("rule/x")
	if err != nil || len(kvs) != 2 || string(kvs[1].Value) != "2" {
		t.Fatalf("state %+v %v", kvs, err)
	}
	// Reset drops the scope before the puts.
	if err := b.Commit(&Commit{State: []StateChange{{Scope: "rule/x", Reset: true, Puts: []KV{{[]byte("c"), []byte("3")}}}}}); err != nil {
		t.Fatal(err)
	}
	kvs, _ = b.LoadState("rule/x")
	if len(kvs) != 1 || string(kvs[0].Key) != "c" {
		t.Fatalf("after reset %+v", kvs)
	}
}

func TestRoutesAndSlowestUplinkKeepsEntries(t *testing.T) {
	b, err := Open(filepath.Join(t.TempDir(), "buf.db"), Options{Uplinks: []string{"a", "b"}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	c := Commit{Entries: append(entries(2, "a"), entries(2, "b")...)}
	if err := b.Commit(&c); err != nil {
		t.Fatal(err)
	}
	ga, sa, _ := b.Read("a", Position{}, 10, nil)
	gb, sb, _ := b.Read("b", Position{}, 10, nil)
	if len(ga) != 2 || ga[1].Seq != 2 || sa.Normal != 4 || len(gb) != 2 || gb[0].Seq != 3 || sb.Normal != 4 {
		t.Fatalf("routing: a %d (scanned %d), b %d (scanned %d)", len(ga), sa, len(gb), sb)
	}
	b.Ack("a", sa)
	if b.Records() != 4 {
		t.Errorf("deleted before b acked: %d left", b.Records())
	}
	b.Ack("b", sb)
	if b.Records() != 0 || b.Stats.Deleted.Load() != 4 {
		t.Errorf("after both acked: %d left, %d deleted", b.Records(), b.Stats.Deleted.Load())
	}
}

func TestChangedWakesReaders(t *testing.T) {
	b, err := Open(filepath.Join(t.TempDir(), "buf.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ch := b.Changed()
	select {
	case <-ch:
		t.Fatal("closed before any commit")
	default:
	}
	b.Commit(&Commit{Entries: entries(1)})
	<-ch // closed by the commit; a hang here fails the test by timeout
}

func TestOpenLockedFileFails(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buf.db")
	b, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := Open(path, Options{Timeout: 50e6}); err == nil {
		t.Fatal("second open of a locked file succeeded")
	}
}

func BenchmarkCommit100(b *testing.B) {
	buf, err := Open(filepath.Join(b.TempDir(), "buf.db"), Options{Uplinks: []string{"u"}})
	if err != nil {
		b.Fatal(err)
	}
	defer buf.Close()
	es := entries(100)
	for b.Loop() {
		c := Commit{Entries: es}
		if err := buf.Commit(&c); err != nil {
			b.Fatal(err)
		}
	}
}

// TestCheckpointPagesArePacked: a checkpoint of 1,000 groups, taken again
// with every value changed, leaves the state's leaf pages nearly full, so
// that each checkpoint writes (copy on write) no more pages than its state
// needs; at bbolt's default they were half full.
func TestCheckpointPagesArePacked(t *testing.T) {
	b, err := Open(filepath.Join(t.TempDir(), "buf.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	puts := make([]KV, 1000)
	for round := range 3 {
		for i := range puts {
			puts[i] = KV{Key: fmt.Appendf(nil, "gdev-%04d", i), Value: bytes.Repeat([]byte{byte(round)}, 80+round*4)}
		}
		if err := b.Commit(&Commit{State: []StateChange{{Scope: "rule/w1", Puts: puts}}}); err != nil {
			t.Fatal(err)
		}
	}
	err = b.view(func(tx *bolt.Tx) error {
		st := tx.Bucket(bucketState).Bucket([]byte("rule/w1")).Stats()
		if st.KeyN != 1000 {
			t.Errorf("%d keys, want 1000", st.KeyN)
		}
		if fill := float64(st.LeafInuse) / float64(st.LeafAlloc); fill < 0.85 {
			t.Errorf("leaf pages %.0f%% full (%d bytes in %d pages), want at least 85%%", fill*100, st.LeafInuse, st.LeafPageN)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
