package ingest

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// waitCounters waits until the tailer's counters are exactly want: they are
// added after a line is sent, so the reader may see a line first.
func waitCounters(t *testing.T, lt *LogTail, want LogTailCounters) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := lt.Counters()
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("counters:\n got %+v\nwant %+v", got, want)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestLogTailCountersAfterAppendAndRotation reads a file, an append to it,
// and a rename rotation, and checks every counter: lines, bytes, files
// opened and open, one rotation, nothing else.
func TestLogTailCountersAfterAppendAndRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	appendFile(t, path, lines("a", 0, 10)) // 10 lines of 8 bytes
	lt, out := startTail(t, LogTailOptions{Paths: []string{filepath.Join(dir, "*.log")}, RotateWait: 50 * time.Millisecond})
	recv(t, out, 10)
	waitCounters(t, lt, LogTailCounters{Lines: 10, Bytes: 80, Opened: 1, Open: 1})

	appendFile(t, path, lines("a", 10, 15)+"par") // a partial line is read, not sent
	recv(t, out, 5)
	waitCounters(t, lt, LogTailCounters{Lines: 15, Bytes: 123, Opened: 1, Open: 1})

	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path, lines("b", 0, 3)+"END\n")
	ms := recvUntil(t, out, "END")
	// The renamed file's partial line is sent when it is closed, after
	// RotateWait: it may come before or after the new file's lines.
	got := payloads(ms)
	slices.Sort(got)
	if strings.Join(got, ",") != "b 00000,b 00001,b 00002" && strings.Join(got, ",") != "b 00000,b 00001,b 00002,par" {
		t.Fatalf("after the rotation: %v", payloads(ms))
	}
	// The old file is closed once RotateWait passed without growth.
	wantLines := uint64(15 + 3 + 1 + 1) // ... + END + the partial line "par"
	if len(got) == 3 {
		if m := recv(t, out, 1)[0]; string(m.Payload) != "par" {
			t.Fatalf("got %q, want the renamed file's partial line", m.Payload)
		}
	}
	waitCounters(t, lt, LogTailCounters{Lines: wantLines, Bytes: 123 + 28, Opened: 2, Open: 1, Rotations: 1})
}
