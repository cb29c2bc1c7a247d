//go:build !unix

package ingest

import "os"

// identity is not available: log inputs need device and inode numbers.
func identity(os.FileInfo) (fileID, bool) { return fileID{}, false }
