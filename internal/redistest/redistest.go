// Package redistest runs a real redis-server for tests: on a free loopback
// port, in a temporary directory, optionally with an append-only file, and
// lets a test kill it and start it again on the same port and directory.
//
// The redis-server binary must be on PATH. Without it a test is skipped,
// except under CI (the CI environment variable set), where it fails: CI is
// expected to install redis-server.
package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/modelgate/modelgate/internal/testenv"
)

// Fsync policies of the append-only file (Redis's appendfsync).
const (
	FsyncAlways   = "always"
	FsyncEverySec = "everysec"
	FsyncNo       = "no"
)

// Options configure a server. The zero value runs Redis with no
// persistence at all, which is what most tests want.
type Options struct {
	// AOF turns on the append-only file (appendonly yes), so data written
	// before Stop is there again after Restart.
	AOF bool
	// AppendFsync is the AOF's fsync policy: FsyncAlways, FsyncEverySec
	// (the default) or FsyncNo. Ignored without AOF.
	AppendFsync string
	// Args are extra redis-server arguments, e.g. "--maxmemory", "10mb".
	Args []string
	// StartTimeout bounds how long Start and Restart wait for the server to
	// answer PING. Zero means 10 s.
	StartTimeout time.Duration
}

// Server is one redis-server process. Its methods are safe for concurrent
// use, but Stop and Restart are meant to be called from the test goroutine.
type Server struct {
	t    testing.TB
	opt  Options
	dir  string
	port int

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// Start starts a server and registers its shutdown with t.Cleanup. It
// fails the test when the server cannot start, and skips it when
// redis-server is not installed (outside CI).
func Start(t testing.TB, opt Options) *Server {
	t.Helper()
	testenv.LookPath(t, "Debian: apt-get install redis-server", "redis-server")
	if opt.AppendFsync == "" {
		opt.AppendFsync = FsyncEverySec
	}
	if opt.StartTimeout <= 0 {
		opt.StartTimeout = 10 * time.Second
	}
	s := &Server{t: t, opt: opt, dir: t.TempDir()}
	t.Cleanup(s.Stop)
	// A free port can be taken by someone else between our probe and
	// redis-server's bind; try a few.
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if s.port, err = freePort(); err != nil {
			continue
		}
		if err = s.start(); err == nil {
			return s
		}
	}
	t.Fatalf("redistest: start redis-server: %v", err)
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Addr is the server's HOST:PORT.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// URL is the server's redis:// URL, database 0.
func (s *Server) URL() string { return "redis://" + s.Addr() + "/0" }

// Dir is the server's working directory (where its AOF lives).
func (s *Server) Dir() string { return s.dir }

func (s *Server) args() []string {
	a := []string{
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--dir", s.dir,
		"--daemonize", "no",
		"--save", "",
		"--logfile", filepath.Join(s.dir, "redis.log"),
		"--enable-debug-command", "local", // DEBUG SLEEP for slow-server tests
	}
	if s.opt.AOF {
		a = append(a, "--appendonly", "yes", "--appendfsync", s.opt.AppendFsync)
	} else {
		a = append(a, "--appendonly", "no")
	}
	return append(a, s.opt.Args...)
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return errors.New("redistest: server already running")
	}
	cmd := exec.Command("redis-server", s.args()...)
	cmd.Dir = s.dir
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	deadline := time.Now().Add(s.opt.StartTimeout)
	for {
		err := ping(s.Addr())
		if err == nil {
			s.cmd, s.done = cmd, done
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("redis-server exited at start: %s", s.logTail())
		default:
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-done
			return fmt.Errorf("redis-server did not answer PING within %v: %v; log: %s", s.opt.StartTimeout, err, s.logTail())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// ping sends one PING over a fresh connection and expects +PONG (not a
// -LOADING error while the AOF is read).
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	return nil
}

func (s *Server) logTail() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// Stop kills the server with SIGKILL, as a crash would, and waits for it
// to exit. What reached the AOF (per AppendFsync) survives for Restart.
// Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd, s.done = nil, nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// Restart starts the server again on the same port and directory, after
// Stop (or after stopping it first if it is running), and waits until it
// answers PING, which with an AOF means the file has been loaded.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	var err error
	// The old process's port can linger briefly; retry the bind.
	for attempt := 0; attempt < 20; attempt++ {
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.t.Fatalf("redistest: restart redis-server: %v", err)
}

// Running reports whether the server process is up.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

// Client returns a go-redis client of the server's database 0, for a test
// to fill or read it; it is closed when the test ends.
func (s *Server) Client() *redis.Client {
	s.t.Helper()
	opt, err := redis.ParseURL(s.URL())
	if err != nil {
		s.t.Fatalf("redistest: %v", err)
	}
	c := redis.NewClient(opt)
	s.t.Cleanup(func() { _ = c.Close() })
	return c
}

// UnusedURL is a redis:// URL of a loopback port that nothing listens on
// (it was free a moment ago), for tests of a Redis that is down.
func UnusedURL(t testing.TB) string {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	return "redis://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) + "/0"
}
