package exepages

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// Release unmaps the pages of the running executable's read-only mappings;
// see the package doc.
func Release() (Stats, error) {
	var st Stats
	exe, err := os.Stat("/proc/self/exe")
	if err != nil {
		return st, fmt.Errorf("release executable pages: %w", err)
	}
	sys, ok := exe.Sys().(*syscall.Stat_t)
	if !ok {
		return st, fmt.Errorf("release executable pages: no inode for /proc/self/exe")
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return st, fmt.Errorf("release executable pages: %w", err)
	}
	st.RSSFrom = resident()
	sc := bufio.NewScanner(bytes.NewReader(maps))
	for sc.Scan() {
		lo, hi, ok := readOnlyMapping(sc.Text(), devName(uint64(sys.Dev)), sys.Ino)
		if !ok {
			continue
		}
		if _, _, errno := syscall.Syscall(syscall.SYS_MADVISE, uintptr(lo), uintptr(hi-lo), syscall.MADV_DONTNEED); errno != 0 {
			return st, fmt.Errorf("release executable pages: madvise %x-%x: %w", lo, hi, errno)
		}
		st.Mappings++
		st.Bytes += int64(hi - lo)
	}
	st.RSSTo = resident()
	return st, nil
}

// readOnlyMapping parses a line of /proc/self/maps ("start-end perms offset
// dev inode path") and reports the range of a private mapping of the file
// dev, inode that cannot be written.
func readOnlyMapping(line, dev string, inode uint64) (lo, hi uint64, ok bool) {
	f := strings.Fields(line)
	if len(f) < 6 || (f[1] != "r-xp" && f[1] != "r--p") || f[3] != dev {
		return 0, 0, false
	}
	if ino, err := strconv.ParseUint(f[4], 10, 64); err != nil || ino != inode {
		return 0, 0, false
	}
	start, end, found := strings.Cut(f[0], "-")
	if !found {
		return 0, 0, false
	}
	lo, err1 := strconv.ParseUint(start, 16, 64)
	hi, err2 := strconv.ParseUint(end, 16, 64)
	if err1 != nil || err2 != nil || hi <= lo {
		return 0, 0, false
	}
	return lo, hi, true
}

// devName formats a device number as /proc/self/maps does (major:minor in
// hex, the kernel's encoding of dev_t).
func devName(dev uint64) string {
	major := (dev>>8)&0xfff | (dev>>32)&^0xfff
	minor := dev&0xff | (dev>>12)&^0xff
	return fmt.Sprintf("%02x:%02x", major, minor)
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
