package buffer

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// CompactSlack is how much larger than its live data the file may grow
// before MaybeCompact rewrites it: bbolt reuses freed pages but never
// returns them to the file system.
const CompactSlack = 16 << 20

// MaybeCompact rewrites the file when it is more than twice its live data
// plus CompactSlack, which happens after a large backlog drained. It reports
// whether it compacted.
func (b *Buffer) MaybeCompact() (bool, error) {
	size := b.FileSize()
	if size <= 2*b.Bytes()+CompactSlack {
		return false, nil
	}
	return true, b.Compact()
}

// Compact copies the live data into a new file and swaps it in atomically
// (rename over the old one). Every other operation waits meanwhile; the time
// is proportional to the live data, not to the file.
func (b *Buffer) Compact() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.db == nil {
		return ErrClosed
	}
	start := time.Now()
	before := b.FileSize()
	tmp := b.path + ".compact"
	os.Remove(tmp)
	dst, err := bolt.Open(tmp, 0o600, &bolt.Options{Timeout: time.Second, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return fmt.Errorf("compact buffer %s: %w", b.path, err)
	}
	if err := bolt.Compact(dst, b.db, 16<<20); err != nil {
		dst.Close()
		os.Remove(tmp)
		return fmt.Errorf("compact buffer %s: %w", b.path, err)
	}
	if err := dst.Sync(); err != nil {
		dst.Close()
		os.Remove(tmp)
		return fmt.Errorf("compact buffer %s: %w", b.path, err)
	}
	dst.Close()
	if err := b.db.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("compact buffer %s: close: %w", b.path, err)
	}
	b.db = nil
	renameErr := os.Rename(tmp, b.path)
	if renameErr == nil {
		syncDir(filepath.Dir(b.path))
	} else {
		os.Remove(tmp)
	}
	// Reopen whichever file is in place: the old one if the rename failed.
	db, err := openDB(b.path, time.Second, b.opts.NoSync)
	if err != nil {
		return fmt.Errorf("compact buffer %s: reopen: %w", b.path, err)
	}
	b.db = db
	if renameErr != nil {
		return fmt.Errorf("compact buffer %s: %w", b.path, renameErr)
	}
	b.Stats.Compactions.Add(1)
	b.log.Info("buffer compacted", "path", b.path, "before_bytes", before, "after_bytes", b.FileSize(), "took", time.Since(start))
	return nil
}
