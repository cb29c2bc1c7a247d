package exepages

import (
	"os"
	"strconv"
	"strings"
	"syscall"
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
	exe, err := os.Stat("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	ino := exe.Sys().(*syscall.Stat_t).Ino
	b, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	rss := map[string]int{}
	perms := ""
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 6 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":"):
			perms = ""
			if n, err := strconv.ParseUint(f[4], 10, 64); err == nil && n == ino {
				perms = f[1]
			}
		case len(f) == 3 && f[0] == "Rss:" && perms != "":
			kb, _ := strconv.Atoi(f[1])
			rss[perms] += kb
		}
	}
	return rss
}

func TestRelease(t *testing.T) {
	written = 42
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
	// test, os, strconv) is mapped again, in 64 KiB fault-around windows:
	// most of a small test binary's text.
	if after["r-xp"] >= before["r-xp"] {
		t.Errorf("text: %d kB resident after Release, %d before; want less", after["r-xp"], before["r-xp"])
	}
	if after["r--p"] > before["r--p"]/2 {
		t.Errorf("rodata: %d kB resident after Release, %d before; want at most half", after["r--p"], before["r--p"])
	}
	if drop, want := (st.RSSFrom-st.RSSTo)>>10, int64(before["r-xp"]+before["r--p"])/2; drop < want {
		t.Errorf("process RSS went down by %d kB in Release; want at least half the %d kB of text and rodata", drop, 2*want)
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

func TestReadOnlyMapping(t *testing.T) {
	for _, c := range []struct {
		line   string
		lo, hi uint64
		ok     bool
	}{
		{"00400000-00a79000 r-xp 00000000 fe:00 123 /usr/bin/sluice", 0x400000, 0xa79000, true},
		{"00a79000-0114b000 r--p 00679000 fe:00 123 /usr/bin/sluice (deleted)", 0xa79000, 0x114b000, true},
		{"0114b000-011b4000 rw-p 00d4b000 fe:00 123 /usr/bin/sluice", 0, 0, false}, // .data
		{"7f00000000-7f00008000 r--s 00000000 fe:00 123 /var/lib/sluice/buffer.db", 0, 0, false},
		{"00400000-00a79000 r-xp 00000000 fe:00 124 /usr/bin/other", 0, 0, false},
		{"00400000-00a79000 r-xp 00000000 fe:01 123 /mnt/sluice", 0, 0, false}, // same inode, other device
		{"011b4000-031fe000 rw-p 00000000 00:00 0", 0, 0, false},
		{"zz-00a79000 r-xp 00000000 fe:00 123 /usr/bin/sluice", 0, 0, false},
		{"", 0, 0, false},
	} {
		lo, hi, ok := readOnlyMapping(c.line, "fe:00", 123)
		if lo != c.lo || hi != c.hi || ok != c.ok {
			t.Errorf("readOnlyMapping(%q) = %x, %x, %v; want %x, %x, %v", c.line, lo, hi, ok, c.lo, c.hi, c.ok)
		}
	}
}

func TestDevName(t *testing.T) {
	// dev_t: minor's low 8 bits, major's 12, minor's next 12 bits (major 259,
	// minor 3 is NVMe's first partition; minor 300 needs the high bits).
	for dev, want := range map[uint64]string{0xfe00: "fe:00", 0x0801: "08:01", 0x10303: "103:03", 0x10012c: "01:12c"} {
		if got := devName(dev); got != want {
			t.Errorf("devName(%#x) = %q, want %q", dev, got, want)
		}
	}
}
