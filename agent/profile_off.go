//go:build !pprof

package main

// startProfile is a no-op: only builds with the pprof tag can profile
// (see profile_pprof.go), so release binaries stay without the profiler.
func startProfile() (stop func(), err error) { return func() {}, nil }
