// Package testenv starts the real components that tests and benchmarks run
// against: mosquitto (Debian's package), an embedded nats-server with
// JetStream, and the project's own binaries. Nothing here is a mock.
package testenv

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Mosquitto is a running mosquitto broker.
type Mosquitto struct {
	Port int
	URL  string // tcp://127.0.0.1:port
	Cmd  *exec.Cmd
	done chan struct{}
}

// MosquittoConf is the broker configuration Sluice needs (DESIGN.md,
// "Delivery guarantee" 2): an unbounded queue for a disconnected persistent
// session, and an in-flight window large enough for a consumer that acks
// after its commit.
const MosquittoConf = `listener %d 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 0
max_queued_bytes 0
max_inflight_messages 1000
`

// MosquittoPath finds the mosquitto binary or says how to install it.
func MosquittoPath() (string, error) {
	for _, p := range []string{"/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath("mosquitto"); err == nil {
		return p, nil
	}
	return "", errors.New("mosquitto not found: install it (apt-get install -y mosquitto; `make test` does this when run as root)")
}

// StartMosquitto starts mosquitto on a free loopback port with MosquittoConf
// and waits until it accepts connections.
func StartMosquitto(dir string) (*Mosquitto, error) { return StartMosquittoWith(dir, "") }

// StartMosquittoWith is StartMosquitto with extra configuration lines for the
// listener (cafile, certfile, keyfile, require_certificate for TLS).
func StartMosquittoWith(dir, extra string) (*Mosquitto, error) {
	bin, err := MosquittoPath()
	if err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, fmt.Sprintf("mosquitto-%d.conf", port))
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(MosquittoConf, port)+extra), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-c", conf)
	logf, err := os.Create(filepath.Join(dir, fmt.Sprintf("mosquitto-%d.log", port)))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start mosquitto: %w", err)
	}
	m := &Mosquitto{Port: port, URL: fmt.Sprintf("tcp://127.0.0.1:%d", port), Cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); logf.Close(); close(m.done) }()
	if err := waitTCP(m.done, fmt.Sprintf("127.0.0.1:%d", port), 10*time.Second); err != nil {
		m.Stop()
		return nil, fmt.Errorf("mosquitto on port %d: %w (log in %s)", port, err, logf.Name())
	}
	return m, nil
}

// Stop ends the broker.
func (m *Mosquitto) Stop() {
	m.Cmd.Process.Signal(os.Interrupt)
	select {
	case <-m.done:
	case <-time.After(5 * time.Second):
		m.Cmd.Process.Kill()
		<-m.done
	}
}

func waitTCP(exited <-chan struct{}, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-exited:
			return errors.New("exited before listening")
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not listening after %s: %w", timeout, err)
		}
		time.Sleep(20 * time.Millisecond) // polling a port: there is no event to wait for
	}
}

// StartNATS starts an embedded nats-server with JetStream, storing in dir.
func StartNATS(dir string) (*server.Server, error) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir, NoSigs: true, NoLog: true})
	if err != nil {
		return nil, fmt.Errorf("nats-server: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("nats-server not ready after 10s")
	}
	return ns, nil
}

// RepoRoot returns the module's root directory.
func RepoRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("not inside the sluice module")
	}
	return filepath.Dir(mod), nil
}

// Build compiles the main package pkg (relative to the repo root, like
// "./agent") into dir and returns the binary's path.
func Build(ctx context.Context, dir, pkg, name string) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, name)
	if runtime.GOOS == "windows" {
		out += ".exe"
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return out, nil
}

// LineWaiter scans a child's output for a line containing a string.
type LineWaiter struct {
	lines chan string
}

// WatchLines reads r line by line, copying each to tee (if not nil).
func WatchLines(r interface{ Read([]byte) (int, error) }, tee func(string)) *LineWaiter {
	w := &LineWaiter{lines: make(chan string, 1024)}
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			if tee != nil {
				tee(sc.Text())
			}
			select {
			case w.lines <- sc.Text():
			default:
			}
		}
		close(w.lines)
	}()
	return w
}

// Wait returns when a line containing s was read, or an error at timeout or EOF.
func (w *LineWaiter) Wait(s string, timeout time.Duration) error {
	t := time.After(timeout)
	for {
		select {
		case l, ok := <-w.lines:
			if !ok {
				return fmt.Errorf("output ended before %q", s)
			}
			if strings.Contains(l, s) {
				return nil
			}
		case <-t:
			return fmt.Errorf("no line with %q within %s", s, timeout)
		}
	}
}
