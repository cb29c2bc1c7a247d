//go:build !unix

package procs

import "time"

// Elsewhere the Governor has no CPU time to go by and leaves GOMAXPROCS to
// the runtime.
const haveProcessCPU = false

func processCPU() time.Duration { return 0 }
