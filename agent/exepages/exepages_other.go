//go:build !linux

package exepages

// Release does nothing outside Linux: the agent ships for Linux only, and
// other systems have no /proc/self/maps to find the executable's mappings.
func Release() (Stats, error) { return Stats{}, nil }
