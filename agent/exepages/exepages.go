// Package exepages gives back to the kernel the pages of the agent's own
// executable that start-up mapped and the running agent does not need.
//
// Start-up runs code and reads data spread over the whole binary: every
// package's init, the YAML decoder and the config checks, regexp compiles,
// the first connections. The kernel maps a file's pages 64 KiB at a time
// around each fault (fault-around), so an agent that has just started has
// most of its text, all of its rodata and most of its pclntab mapped:
// about 10 of its 12-13 MiB RSS on linux/amd64, measured (go run
// ./tools/bench --only idle). Those pages are clean and backed by the
// file, yet while they are mapped they count in the agent's RSS and the
// kernel protects them from reclaim like any mapped executable page.
//
// Release unmaps them with madvise(MADV_DONTNEED) on the executable's
// read-only private mappings (text, rodata, pclntab). Nothing is lost: a
// page of those mappings is never written, so the page cache holds the same
// bytes, and the next access maps it again with a minor fault (a major one
// only if the kernel dropped it from the page cache meanwhile). The
// writable mapping (.data) is never touched: its pages may have been
// written, and dropping them would revert them to the file's contents.
package exepages

// Stats says what Release did.
type Stats struct {
	Mappings int   // executable mappings advised
	Bytes    int64 // their size
	RSSFrom  int64 // the process's resident bytes before
	RSSTo    int64 // and after
}
