package ingest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// tailForScans returns a tailer set up as Start sets it up, without its
// goroutine: the test drives its scans and reads.
func tailForScans(t *testing.T, paths ...string) (*LogTail, chan Message) {
	t.Helper()
	lt, err := NewLogTail(LogTailOptions{Name: "app", Paths: paths})
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan Message, 64)
	lt.out = out
	lt.files = make(map[fileID]*tailFile)
	lt.saved = make(map[fileID]savedPos)
	lt.buf = make([]byte, readChunk)
	lt.now = time.Now()
	t.Cleanup(func() {
		for _, tf := range lt.order {
			tf.f.Close()
		}
	})
	return lt, out
}

func fileIDOf(t *testing.T, path string) fileID {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	id, ok := identity(fi)
	if !ok {
		t.Fatalf("%s: no file identity", path)
	}
	return id
}

func setMtime(t *testing.T, path string, at time.Time) {
	t.Helper()
	if err := os.Chtimes(path, at, at); err != nil {
		t.Fatal(err)
	}
}

// TestLogTailSkippedFindsFilesRotatedAwayBetweenScans: between two scans
// app.log is renamed to app.log.1, a new app.log is written and renamed to
// app.log.2, and a third app.log is written. The second scan finds the
// third file, and skipped adds app.log.2 (untracked, written after the last
// write to the file read before) as a rotated file read from the start,
// under app.log's topic. It leaves alone the tracked app.log.1, a
// compressed sibling, a sibling older than that last write, a directory and
// a file of another name.
func TestLogTailSkippedFindsFilesRotatedAwayBetweenScans(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	appendFile(t, path, "a1\n")
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	setMtime(t, path, t0)
	lt, out := tailForScans(t, path)
	lt.scan(true)
	if _, err := lt.readAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := payloads(recv(t, out, 1)); got[0] != "a1" {
		t.Fatalf("first scan read %v", got)
	}
	idA := fileIDOf(t, path)

	// Between two scans.
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path, "b1\nb2\n")
	setMtime(t, path, t0.Add(time.Second))
	idB := fileIDOf(t, path)
	if err := os.Rename(path, path+".2"); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path+".3.gz", "compressed\n")
	setMtime(t, path+".3.gz", t0.Add(2*time.Second))
	appendFile(t, path+".old", "old copy\n")
	setMtime(t, path+".old", t0.Add(-time.Second))
	if err := os.Mkdir(path+".d", 0o700); err != nil {
		t.Fatal(err)
	}
	appendFile(t, filepath.Join(dir, "other.log"), "other\n")
	appendFile(t, path, "c1\n")
	setMtime(t, path, t0.Add(3*time.Second))
	idC := fileIDOf(t, path)

	lt.scan(false)
	if n := lt.Uncovered.Load(); n != 1 {
		t.Fatalf("Uncovered = %d, want 1", n)
	}
	if n := lt.Rotations.Load(); n != 1 {
		t.Fatalf("Rotations = %d, want 1 (app.log.1)", n)
	}
	if len(lt.order) != 3 || lt.order[0].id != idA || lt.order[1].id != idB || lt.order[2].id != idC {
		t.Fatalf("files %v, want app.log.1, app.log.2 and app.log in that order", lt.order)
	}
	b := lt.order[1]
	if b.path != path || !b.rotated || b.off != 0 || b.f.Name() != path+".2" {
		t.Fatalf("app.log.2 added as %s (topic %s) rotated=%v off=%d", b.f.Name(), b.path, b.rotated, b.off)
	}
	if lt.order[2].rotated || !lt.order[0].rotated {
		t.Fatal("app.log.1 should be rotated and the new app.log not")
	}
	if n, open := lt.Opened.Load(), lt.Open.Load(); n != 3 || open != 3 {
		t.Fatalf("Opened = %d, Open = %d, want 3 and 3", n, open)
	}

	// Read: the rotated files first, from where each was.
	if _, err := lt.readAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	ms := recv(t, out, 3)
	if got := strings.Join(payloads(ms), ","); got != "b1,b2,c1" {
		t.Fatalf("read %s, want b1,b2,c1", got)
	}
	for _, m := range ms {
		if m.Topic != path {
			t.Errorf("%q has topic %s, want %s", m.Payload, m.Topic, path)
		}
	}
	select {
	case m := <-out:
		t.Fatalf("unexpected %q", m.Payload)
	default:
	}

	// A scan that finds nothing new calls skipped for nothing: no file is
	// added twice.
	lt.scan(false)
	if n := lt.Uncovered.Load(); n != 1 || len(lt.order) != 3 {
		t.Fatalf("second scan: Uncovered = %d, %d files", n, len(lt.order))
	}
}

// TestLogTailSkippedWithoutEarlierFile: a file that appears at a path no
// file was read from before has no siblings to look for, even when files
// beside it begin with its name.
func TestLogTailSkippedWithoutEarlierFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	lt, _ := tailForScans(t, path)
	lt.scan(true) // nothing there yet
	appendFile(t, path+".1", "rotated before we ever saw app.log\n")
	appendFile(t, path, "x\n")
	lt.scan(false)
	if n := lt.Uncovered.Load(); n != 0 || len(lt.order) != 1 || lt.order[0].f.Name() != path {
		t.Fatalf("Uncovered = %d, files %d, want 0 and app.log alone", n, len(lt.order))
	}
	// Called directly for a path with no earlier file, it adds nothing.
	lt.skipped(filepath.Join(dir, "none.log"), fileIDOf(t, path))
	if len(lt.order) != 1 {
		t.Fatalf("%d files after skipped for an unknown path", len(lt.order))
	}
}
