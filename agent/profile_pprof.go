//go:build pprof

package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"time"
)

// startProfile writes a CPU profile of the run to the file named by
// SLUICE_CPUPROFILE, and a heap profile (with every allocation since the
// start: go tool pprof -sample_index=alloc_objects) to SLUICE_MEMPROFILE when
// the run ends, in builds with the pprof tag only (make profile-w1): release
// binaries carry no profiler.
func startProfile() (stop func(), err error) {
	if mem := os.Getenv("SLUICE_MEMPROFILE"); mem != "" {
		stopCPU, err := startCPUProfile()
		if err != nil {
			return nil, err
		}
		return func() {
			stopCPU()
			if f, err := os.Create(mem); err == nil {
				pprof.Lookup("allocs").WriteTo(f, 0)
				f.Close()
			}
		}, nil
	}
	return startCPUProfile()
}

func startCPUProfile() (stop func(), err error) {
	path := os.Getenv("SLUICE_CPUPROFILE")
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	// SLUICE_CPUPROFILE_DELAY starts the profile that long after the
	// start, to look at a later phase (an idle agent after a load).
	delay, _ := time.ParseDuration(os.Getenv("SLUICE_CPUPROFILE_DELAY"))
	start := func() error {
		// SLUICE_CPUPROFILE_HZ raises the sampling rate (100 Hz) for
		// short runs; the runtime then warns that the rate was set.
		if hz, _ := strconv.Atoi(os.Getenv("SLUICE_CPUPROFILE_HZ")); hz > 0 {
			runtime.SetCPUProfileRate(hz)
		}
		return pprof.StartCPUProfile(f)
	}
	if delay <= 0 {
		if err := start(); err != nil {
			f.Close()
			return nil, fmt.Errorf("cpu profile %s: %w", path, err)
		}
	} else {
		time.AfterFunc(delay, func() { _ = start() })
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
