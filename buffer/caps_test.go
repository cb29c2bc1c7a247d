package buffer

import (
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

func mkEntries(rule string, p Priority, n int) []Entry {
	es := make([]Entry, n)
	for i := range es {
		es[i] = Entry{Rule: rule, Priority: p, Payload: []byte(fmt.Sprintf(`{"rule":%q,"i":%d}`, rule, i))}
	}
	return es
}

func open(t *testing.T, opts Options) *Buffer {
	t.Helper()
	if opts.Uplinks == nil {
		opts.Uplinks = []string{"u"}
	}
	b, err := Open(filepath.Join(t.TempDir(), "buf.db"), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func commit(t *testing.T, b *Buffer, es ...[]Entry) error {
	t.Helper()
	var c Commit
	for _, e := range es {
		c.Entries = append(c.Entries, e...)
	}
	return b.Commit(&c)
}

func readAll(t *testing.T, b *Buffer) []Entry {
	t.Helper()
	got, _, err := b.Read("u", Position{}, 1<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func seqs(es []Entry) []uint64 {
	s := make([]uint64, len(es))
	for i, e := range es {
		s[i] = e.Seq
	}
	return s
}

func TestDropOldestDropsNormalBeforeHigh(t *testing.T) {
	b := open(t, Options{MaxRecords: 10})
	if err := commit(t, b, mkEntries("a", PriorityNormal, 8), mkEntries("alert", PriorityHigh, 2)); err != nil {
		t.Fatal(err)
	}
	if err := commit(t, b, mkEntries("b", PriorityNormal, 5)); err != nil {
		t.Fatal(err)
	}
	if b.Records() != 10 {
		t.Fatalf("records %d", b.Records())
	}
	got := readAll(t, b)
	// High first (seq 9, 10), then the normal survivors 6, 7, 8 of a and 11–15 of b.
	if want := "[9 10 6 7 8 11 12 13 14 15]"; fmt.Sprint(seqs(got)) != want {
		t.Errorf("read order %v, want %s", seqs(got), want)
	}
	if d := b.Drops(); len(d) != 1 || d[DropKey{"a", PriorityNormal, "full"}] != 5 {
		t.Errorf("drops %v", d)
	}
	// Only alerts left to drop: the oldest alerts go.
	if err := commit(t, b, mkEntries("alert", PriorityHigh, 12)); err != nil {
		t.Fatal(err)
	}
	got = readAll(t, b)
	if len(got) != 10 || got[0].Seq != 18 || got[9].Seq != 27 {
		t.Errorf("after alert flood: %v", seqs(got))
	}
	d := b.Drops()
	if d[DropKey{"alert", PriorityHigh, "full"}] != 4 || d[DropKey{"a", PriorityNormal, "full"}] != 8 || d[DropKey{"b", PriorityNormal, "full"}] != 5 {
		t.Errorf("drops %v", d)
	}
	if b.Stats.Dropped.Load() != 17 {
		t.Errorf("dropped %d, want 17", b.Stats.Dropped.Load())
	}
}

func TestDropNewestKeepsOldAndMakesRoomForAlerts(t *testing.T) {
	b := open(t, Options{MaxRecords: 10, Policy: DropNewest})
	commit(t, b, mkEntries("a", PriorityNormal, 10))
	if err := commit(t, b, mkEntries("b", PriorityNormal, 3), mkEntries("alert", PriorityHigh, 2)); err != nil {
		t.Fatal(err)
	}
	got := readAll(t, b)
	if want := "[14 15 3 4 5 6 7 8 9 10]"; fmt.Sprint(seqs(got)) != want {
		t.Errorf("entries %v, want %s", seqs(got), want)
	}
	d := b.Drops()
	if len(d) != 2 || d[DropKey{"b", PriorityNormal, "full"}] != 3 || d[DropKey{"a", PriorityNormal, "full"}] != 2 {
		t.Errorf("drops %v", d)
	}
}

func TestBackpressureRefusesWholeCommit(t *testing.T) {
	b := open(t, Options{MaxRecords: 10, Policy: Backpressure})
	commit(t, b, mkEntries("a", PriorityNormal, 9))
	c := Commit{Entries: mkEntries("a", PriorityNormal, 2), State: []StateChange{{Scope: "s", Puts: []KV{{[]byte("k"), []byte("v")}}}}}
	if err := b.Commit(&c); !errors.Is(err, ErrFull) {
		t.Fatalf("commit over the cap: %v, want ErrFull", err)
	}
	if c.Entries[0].Seq != 0 || b.Records() != 9 || b.LastSeq() != 9 || b.Stats.Full.Load() != 1 {
		t.Errorf("after refusal: seq %d records %d last %d", c.Entries[0].Seq, b.Records(), b.LastSeq())
	}
	if kvs, _ := b.LoadState("s"); len(kvs) != 0 {
		t.Errorf("state saved by a refused commit")
	}
	if err := b.Ack("u", Position{Normal: 5}); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(&c); err != nil {
		t.Fatal(err)
	}
	if c.Entries[0].Seq != 10 || len(b.Drops()) != 0 {
		t.Errorf("seq %d drops %v", c.Entries[0].Seq, b.Drops())
	}
}

func TestMaxBytes(t *testing.T) {
	b := open(t, Options{MaxBytes: 10_000})
	big := make([]Entry, 100)
	for i := range big {
		big[i] = Entry{Rule: "r", Payload: make([]byte, 490)}
	}
	commit(t, b, big)
	if b.Bytes() > 10_000 || b.Bytes() < 9_000 {
		t.Errorf("bytes %d, want just under 10000", b.Bytes())
	}
	per := b.Bytes() / b.Records()
	if kept := b.Records(); kept != 10_000/per || b.Drops()[DropKey{"r", PriorityNormal, "full"}] != uint64(100-kept) {
		t.Errorf("kept %d of 100 at %d bytes each, drops %v", kept, per, b.Drops())
	}
}

func TestMaxAge(t *testing.T) {
	now := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	b := open(t, Options{MaxAge: 10 * time.Second, Now: func() time.Time { return now }})
	commit(t, b, mkEntries("old", PriorityNormal, 3), mkEntries("oldalert", PriorityHigh, 1))
	now = now.Add(5 * time.Second)
	commit(t, b, mkEntries("new", PriorityNormal, 2))
	if age := b.OldestAge(); age != 5*time.Second {
		t.Errorf("oldest age %v", age)
	}
	now = now.Add(7 * time.Second)
	commit(t, b, mkEntries("newest", PriorityNormal, 1))
	d := b.Drops()
	if d[DropKey{"old", PriorityNormal, "age"}] != 3 || d[DropKey{"oldalert", PriorityHigh, "age"}] != 1 || b.Records() != 3 {
		t.Errorf("drops %v records %d", d, b.Records())
	}
}

// TestFillAndDrainStaysBounded fills a capped buffer past its cap and drains
// it, ten times: bbolt reuses the freed pages, so the file stays near the cap.
func TestFillAndDrainStaysBounded(t *testing.T) {
	const maxBytes = 8 << 20
	b := open(t, Options{MaxBytes: maxBytes, NoSync: true})
	payload := make([]byte, 200)
	var pos Position
	for round := 0; round < 10; round++ {
		for i := 0; i < 60; i++ { // 60 × 1000 × ~230 bytes: 1.6 × the cap
			es := make([]Entry, 1000)
			for j := range es {
				es[j] = Entry{Rule: "r", Payload: payload}
			}
			if err := commit(t, b, es); err != nil {
				t.Fatal(err)
			}
		}
		if b.Bytes() > maxBytes {
			t.Fatalf("round %d: %d bytes queued over the cap", round, b.Bytes())
		}
		for {
			got, next, err := b.Read("u", pos, 5000, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) == 0 {
				break
			}
			if err := b.Ack("u", next); err != nil {
				t.Fatal(err)
			}
			pos = next
		}
		if b.Records() != 0 {
			t.Fatalf("round %d: %d records left after draining", round, b.Records())
		}
		if size := b.FileSize(); size > maxBytes*3/2+4<<20 {
			t.Fatalf("round %d: file is %d bytes, over 1.5 × the cap + 4 MiB", round, size)
		}
	}
}

func TestCompactShrinksAndKeepsEverything(t *testing.T) {
	b := open(t, Options{NoSync: true})
	payload := make([]byte, 200)
	for i := 0; i < 200; i++ {
		es := make([]Entry, 1000)
		for j := range es {
			es[j] = Entry{Rule: "r", Payload: payload}
		}
		commit(t, b, es)
	}
	b.Commit(&Commit{State: []StateChange{{Scope: "rule/x", Puts: []KV{{[]byte("g"), []byte("state")}}}}})
	if err := b.Ack("u", Position{Normal: 199_990}); err != nil {
		t.Fatal(err)
	}
	before := b.FileSize()
	done, err := b.MaybeCompact()
	if err != nil || !done {
		t.Fatalf("compact: %v %v (file %d, live %d)", done, err, before, b.Bytes())
	}
	if after := b.FileSize(); after > 1<<20 || after >= before {
		t.Errorf("file %d bytes after compaction, %d before", after, before)
	}
	got := readAll(t, b)
	if len(got) != 10 || got[0].Seq != 199_991 {
		t.Fatalf("after compaction: %d entries from %v", len(got), seqs(got)[:1])
	}
	if kvs, _ := b.LoadState("rule/x"); len(kvs) != 1 {
		t.Errorf("state lost")
	}
	if cur, _ := b.Cursor("u"); cur.Normal != 199_990 {
		t.Errorf("cursor %v", cur)
	}
	if err := commit(t, b, mkEntries("r", PriorityNormal, 1)); err != nil || b.LastSeq() != 200_001 {
		t.Errorf("commit after compaction: %v, last seq %d", err, b.LastSeq())
	}
	if done, _ := b.MaybeCompact(); done {
		t.Error("compacted a compact file")
	}
}
