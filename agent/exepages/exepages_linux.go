package exepages

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"syscall"
)

// Release unmaps the pages of the running executable's read-only mappings
// that hold nothing but the file's bytes; see the package doc. It fails if
// it finds no such mapping.
func Release() (Stats, error) {
	var st Stats
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		return st, fmt.Errorf("release executable pages: %w", err)
	}
	ms, err := parseSmaps(smaps)
	if err != nil {
		return st, fmt.Errorf("release executable pages: %w", err)
	}
	// The executable is the file whose mapping holds this function's code.
	// Its device and inode are taken from the same file rather than from
	// stat(/proc/self/exe): on overlayfs, before Linux 6.8, stat reports the
	// overlay's device while the maps show the underlying file's.
	exe, ok := fileAt(ms, uint64(reflect.ValueOf(Release).Pointer()))
	if !ok {
		return st, errors.New("release executable pages: no file mapping holds the agent's code")
	}
	st.RSSFrom = resident()
	for _, m := range ms {
		if m.file != exe || !m.readOnlyPrivate() {
			continue
		}
		if m.written {
			st.Skipped++
			continue
		}
		// A page written between the read of smaps and here (a debugger
		// setting a breakpoint at that moment) would be dropped: a window
		// of microseconds, once per run.
		if _, _, errno := syscall.Syscall(syscall.SYS_MADVISE, uintptr(m.lo), uintptr(m.hi-m.lo), syscall.MADV_DONTNEED); errno != 0 {
			return st, fmt.Errorf("release executable pages: madvise %x-%x: %w", m.lo, m.hi, errno)
		}
		st.Mappings++
		st.Bytes += int64(m.hi - m.lo)
	}
	st.RSSTo = resident()
	if st.Mappings == 0 {
		return st, fmt.Errorf("release executable pages: no clean read-only mapping of %s (%d hold written pages)", exe, st.Skipped)
	}
	return st, nil
}

// mapping is a mapping of /proc/self/smaps: its header line ("start-end
// perms offset dev inode path") and whether it holds written pages.
type mapping struct {
	lo, hi  uint64
	perms   string
	file    string // "dev inode"; "" for an anonymous mapping
	written bool   // Anonymous or Swap is not 0 kB
}

// parseSmaps returns the mappings of a /proc/self/smaps. A mapping without
// an Anonymous line counts as written: what cannot be read is not released.
func parseSmaps(b []byte) ([]mapping, error) {
	var ms []mapping
	var anonSeen []bool
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if m, ok := parseMapping(line); ok {
			ms = append(ms, m)
			anonSeen = append(anonSeen, false)
			continue
		}
		// A page the process wrote in a private file mapping is a copy of
		// its own: Anonymous while resident, Swap once swapped out (a file's
		// own pages are never swapped, only dropped). (Private_Dirty would
		// not do: it also counts the file's own pages while the page cache
		// has not written them back, as for a binary just linked.)
		key, val, ok := strings.Cut(line, ":")
		if !ok || len(ms) == 0 || (key != "Anonymous" && key != "Swap") {
			continue
		}
		last := len(ms) - 1
		if key == "Anonymous" {
			anonSeen[last] = true
		}
		if kb := strings.TrimSuffix(strings.TrimSpace(val), " kB"); kb != "0" {
			ms[last].written = true
		}
	}
	for i := range ms {
		if !anonSeen[i] {
			ms[i].written = true
		}
	}
	return ms, sc.Err()
}

// parseMapping parses a header line of /proc/self/smaps (the format of
// /proc/self/maps). The fields of a mapping ("Rss:    12 kB") do not parse.
func parseMapping(line string) (mapping, bool) {
	f := strings.Fields(line)
	if len(f) < 5 {
		return mapping{}, false
	}
	start, end, found := strings.Cut(f[0], "-")
	if !found {
		return mapping{}, false
	}
	lo, err1 := strconv.ParseUint(start, 16, 64)
	hi, err2 := strconv.ParseUint(end, 16, 64)
	if err1 != nil || err2 != nil || hi <= lo {
		return mapping{}, false
	}
	m := mapping{lo: lo, hi: hi, perms: f[1]}
	if f[4] != "0" {
		m.file = f[3] + " " + f[4]
	}
	return m, true
}

// readOnlyPrivate reports whether the mapping is private and cannot be
// written. An executable is never mapped shared, and a writable mapping's
// pages may be written at any moment.
func (m mapping) readOnlyPrivate() bool { return m.perms == "r-xp" || m.perms == "r--p" }

// fileAt returns the file ("dev inode") whose mapping holds addr.
func fileAt(ms []mapping, addr uint64) (string, bool) {
	for _, m := range ms {
		if m.lo <= addr && addr < m.hi && m.file != "" {
			return m.file, true
		}
	}
	return "", false
}

// resident returns the process's resident bytes (/proc/self/statm), or 0.
func resident() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return 0
	}
	return pages * int64(os.Getpagesize())
}
