package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/sluiceio/sluice/internal/testenv"
)

// binarySize reports the size of the agent built static and stripped for
// linux/arm64, the gateway build of DESIGN.md's dependency budget, and for
// 32-bit ARMv7.
func (b *bench) binarySize(ctx context.Context) error {
	root, err := testenv.RepoRoot()
	if err != nil {
		return err
	}
	for _, t := range []struct{ name, arch, arm string }{{"arm64", "arm64", ""}, {"armv7", "arm", "7"}} {
		out := filepath.Join(b.dir, "sluice-linux-"+t.name)
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, "./agent")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+t.arch, "GOARM="+t.arm)
		if msg, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build ./agent for linux/%s: %w\n%s", t.name, err, msg)
		}
		fi, err := os.Stat(out)
		if err != nil {
			return fmt.Errorf("%s binary: %w", t.name, err)
		}
		b.report("binary_size_mb_"+t.name, float64(fi.Size())/(1<<20), 2, "MiB")
	}
	return nil
}
