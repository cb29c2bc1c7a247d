package exepages

import (
	"os"
	"reflect"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
)

// written lives in .data, the executable's writable mapping: a value
// written at run time must survive Release (dropping that page would
// revert it to the file's 1).
var written = 1

// exeRSS sums the resident kB of this test binary's mappings by
// permissions, from /proc/self/smaps.
func exeRSS(t *testing.T) map[string]int {
	t.Helper()
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	exe, ok := fileAt(maps, uint64(reflect.ValueOf(exeRSS).Pointer()))
	if !ok {
		t.Fatal("no mapping holds the test's code")
	}
	b, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	rss := map[string]int{}
	perms := ""
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if m, ok := parseMapping(line); ok && !strings.HasSuffix(f[0], ":") {
			perms = ""
			if m.file == exe {
				perms = m.perms
			}
		} else if len(f) == 3 && f[0] == "Rss:" && perms != "" {
			kb, _ := strconv.Atoi(f[1])
			rss[perms] += kb
		}
	}
	return rss
}

func TestRelease(t *testing.T) {
	// A GC cycle between the readings would map back pclntab pages (stack
	// scans) and blur the figures.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	written = 42
	exeRSS(t) // map the code of the measurement itself
	before := exeRSS(t)
	if before["r-xp"] < 256 || before["r--p"] < 256 {
		t.Fatalf("before: text %d kB, rodata %d kB resident; want the test binary's start-up pages (at least 256 kB each)", before["r-xp"], before["r--p"])
	}
	st, err := Release()
	if err != nil {
		t.Fatal(err)
	}
	after := exeRSS(t)
	t.Logf("text %d → %d kB, rodata %d → %d kB, data %d → %d kB; process %d → %d kB",
		before["r-xp"], after["r-xp"], before["r--p"], after["r--p"], before["rw-p"], after["rw-p"], st.RSSFrom>>10, st.RSSTo>>10)
	if st.Mappings != 2 {
		t.Errorf("advised %d mappings, want 2 (text; rodata with pclntab)", st.Mappings)
	}
	// The code that runs between Release and the read of smaps (this
	// test, os, strconv, malloc's size tables) is mapped back in 64 KiB
	// fault-around windows: most of a small test binary's text and a few
	// hundred kB of its rodata. The agent's own check (TestEndToEnd*) sees
	// its RSS fall by more than half.
	if after["r-xp"] >= before["r-xp"] {
		t.Errorf("text: %d kB resident after Release, %d before; want less", after["r-xp"], before["r-xp"])
	}
	if after["r--p"] > before["r--p"]-128 {
		t.Errorf("rodata: %d kB resident after Release, %d before; want at least 128 kB fewer", after["r--p"], before["r--p"])
	}
	if st.RSSTo > st.RSSFrom-128<<10 {
		t.Errorf("process RSS %d → %d kB in Release; want at least 128 kB fewer", st.RSSFrom>>10, st.RSSTo>>10)
	}
	// Dropping a written page of the writable mapping would show as fewer
	// resident pages there and a variable reverted to the file's value.
	if after["rw-p"] < before["rw-p"] {
		t.Errorf("data: %d kB resident after Release, %d before; the writable mapping must be left alone", after["rw-p"], before["rw-p"])
	}
	if written != 42 {
		t.Errorf("a variable in .data reads %d after Release, want 42", written)
	}
}

func TestParseMapping(t *testing.T) {
	for _, c := range []struct {
		line string
		m    mapping
		ok   bool
	}{
		{"00400000-00a79000 r-xp 00000000 fe:00 123 /usr/bin/sluice", mapping{0x400000, 0xa79000, "r-xp", "fe:00 123"}, true},
		{"00a79000-0114b000 r--p 00679000 fe:00 123 /usr/bin/sluice (deleted)", mapping{0xa79000, 0x114b000, "r--p", "fe:00 123"}, true},
		{"0114b000-011b4000 rw-p 00d4b000 fe:00 123 /usr/bin/sluice", mapping{0x114b000, 0x11b4000, "rw-p", "fe:00 123"}, true},
		{"7f00000000-7f00008000 r--s 00000000 103:03 77 /var/lib/sluice/buffer.db", mapping{0x7f00000000, 0x7f00008000, "r--s", "103:03 77"}, true},
		{"011b4000-031fe000 rw-p 00000000 00:00 0", mapping{0x11b4000, 0x31fe000, "rw-p", ""}, true},
		{"ffff0000-ffff1000 r-xp 00000000 00:00 0 [vectors]", mapping{0xffff0000, 0xffff1000, "r-xp", ""}, true},
		{"zz-00a79000 r-xp 00000000 fe:00 123 /usr/bin/sluice", mapping{}, false},
		{"00a79000-00400000 r-xp 00000000 fe:00 123 /usr/bin/sluice", mapping{}, false},
		{"00400000-00a79000 r-xp", mapping{}, false},
		{"", mapping{}, false},
	} {
		m, ok := parseMapping(c.line)
		if m != c.m || ok != c.ok {
			t.Errorf("parseMapping(%q) = %+v, %v; want %+v, %v", c.line, m, ok, c.m, c.ok)
		}
	}
	for perms, want := range map[string]bool{"r-xp": true, "r--p": true, "rw-p": false, "r--s": false, "rwxp": false, "---p": false} {
		if got := (mapping{perms: perms}).readOnlyPrivate(); got != want {
			t.Errorf("readOnlyPrivate(%s) = %v, want %v", perms, got, want)
		}
	}
}

func TestFileAt(t *testing.T) {
	maps := []byte(`00400000-00a79000 r-xp 00000000 fe:00 123 /usr/bin/sluice
00a79000-0114b000 r--p 00679000 fe:00 123 /usr/bin/sluice
011b4000-031fe000 rw-p 00000000 00:00 0
`)
	for addr, want := range map[uint64]string{0x400000: "fe:00 123", 0xa78fff: "fe:00 123", 0xa79000: "fe:00 123", 0x11b4000: "", 0x3000000: "", 0x10: ""} {
		got, ok := fileAt(maps, addr)
		if got != want || ok != (want != "") {
			t.Errorf("fileAt(%#x) = %q, %v; want %q", addr, got, ok, want)
		}
	}
}
