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
// read-only private mappings (text, rodata, pclntab) whose pages are all the
// file's own. Nothing is lost: the page cache holds the same bytes, and the
// next access maps a page again with a minor fault (a major one only if the
// kernel dropped it from the page cache meanwhile). A mapping that holds a
// page the process wrote is left alone, since dropping the page would
// revert it to the file's bytes: the writable .data; in a PIE build, the
// relocated .data.rel.ro, read-only once relocated (r--p, like rodata); a
// text page where a debugger wrote a breakpoint or an eBPF uprobe was
// attached. Such pages show in /proc/self/smaps as Anonymous, or as Swap
// once swapped out.
package exepages

// Stats says what Release did.
type Stats struct {
	Mappings int   // executable mappings advised
	Bytes    int64 // their size
	Skipped  int   // read-only executable mappings left alone: they hold written pages
	RSSFrom  int64 // the process's resident bytes before
	RSSTo    int64 // and after
}
