package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// child is a process the harness started: its stdout and stderr go, merged,
// to a log file and to a list of lines the harness can wait on. It gets
// SIGTERM when the harness's context ends and SIGKILL if the harness dies.
type child struct {
	name    string
	cmd     *exec.Cmd
	logPath string

	mu      sync.Mutex
	lines   []string
	changed chan struct{} // closed and replaced on every new line and at EOF
	eof     bool

	exited chan struct{} // closed when the process exited and its output ended
	err    error         // of Wait; read after exited is closed
}

// startChild runs bin with args. stdin may be nil. On ctx's end the process
// gets SIGTERM and, 10 s later, SIGKILL.
func startChild(ctx context.Context, name, logPath string, stdin io.Reader, bin string, args ...string) (*child, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("%s log: %w", name, err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		logf.Close()
		return nil, fmt.Errorf("%s output pipe: %w", name, err)
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, w, w
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		r.Close()
		w.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	w.Close() // the child holds the write end now
	c := &child{name: name, cmd: cmd, logPath: logPath, changed: make(chan struct{}), exited: make(chan struct{})}
	outputDone := make(chan struct{})
	go func() {
		defer close(outputDone)
		defer logf.Close()
		defer r.Close()
		c.collect(r, logf)
	}()
	go func() {
		c.err = cmd.Wait()
		<-outputDone
		close(c.exited)
	}()
	return c, nil
}

// collect reads the child's output line by line until EOF.
func (c *child) collect(r io.Reader, logf io.Writer) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fmt.Fprintln(logf, sc.Text())
		c.mu.Lock()
		c.lines = append(c.lines, sc.Text())
		close(c.changed)
		c.changed = make(chan struct{})
		c.mu.Unlock()
	}
	c.mu.Lock()
	c.eof = true
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// waitLine waits for a line containing s and returns it. It fails when the
// output ends first, at timeout or when ctx ends.
func (c *child) waitLine(ctx context.Context, s string, timeout time.Duration) (string, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	next := 0
	for {
		c.mu.Lock()
		for ; next < len(c.lines); next++ {
			if strings.Contains(c.lines[next], s) {
				l := c.lines[next]
				c.mu.Unlock()
				return l, nil
			}
		}
		eof, changed := c.eof, c.changed
		c.mu.Unlock()
		if eof {
			return "", fmt.Errorf("%s: output ended before a line with %q (log: %s)", c.name, s, c.logPath)
		}
		select {
		case <-changed:
		case <-t.C:
			return "", fmt.Errorf("%s: no line with %q within %s (log: %s)", c.name, s, timeout, c.logPath)
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

// lastLine returns the last line containing s, or "".
func (c *child) lastLine(s string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := len(c.lines) - 1; i >= 0; i-- {
		if strings.Contains(c.lines[i], s) {
			return c.lines[i]
		}
	}
	return ""
}

// wait waits for the child to exit and returns Wait's error.
func (c *child) wait(ctx context.Context) error {
	select {
	case <-c.exited:
		return c.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// stop sends SIGTERM, waits up to grace for the exit, then kills. It is a
// no-op for a child that exited already.
func (c *child) stop(grace time.Duration) error {
	select {
	case <-c.exited:
		return nil
	default:
	}
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop %s: %w", c.name, err)
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-c.exited:
		return nil
	case <-t.C:
	}
	c.cmd.Process.Kill()
	<-c.exited
	return fmt.Errorf("%s did not stop within %s of SIGTERM; killed", c.name, grace)
}
