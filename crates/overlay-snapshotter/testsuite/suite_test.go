// Package snapshottersuite runs containerd's snapshotter conformance suite
// (github.com/containerd/containerd/snapshots/testsuite, containerd 1.6) against
// an out-of-process proxy snapshotter: a gRPC server speaking
// containerd.services.snapshots.v1.Snapshots on a unix socket.
//
// Every test of the suite gets a fresh server, started as
//
//	$OVERLAY2_BIN --home <root>/home serve containerd --socket <root>/s.sock
//
// where <root> is the snapshotter root the suite hands out. The server's
// stdout and stderr go to <root>/server.log (copied to $SUITE_LOG_DIR when
// that is set, because the suite deletes <root> when the test ends).
//
// Environment:
//
//	OVERLAY2_BIN        server binary (required)
//	SUITE_NAME          name given to the suite (default "overlay2-rs")
//	SUITE_LOG_DIR       directory to keep each server's log in (optional)
//	SUITE_CALL_TIMEOUT  deadline of each unary gRPC call (default 2m)
//
// The suite mounts what the snapshotter returns, so it must run as root.
// Use run.sh next to this file to build and run it.
package snapshottersuite

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/log"
	"github.com/containerd/containerd/snapshots"
	"github.com/containerd/containerd/snapshots/proxy"
	"github.com/containerd/containerd/snapshots/testsuite"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
)

const (
	// proxyName is what the proxy client puts in every request's
	// `snapshotter` field.
	proxyName    = "overlay2-rs"
	startTimeout = 10 * time.Second
	stopTimeout  = 10 * time.Second
	logTailLines = 40
)

func TestSnapshotterSuite(t *testing.T) {
	bin := os.Getenv("OVERLAY2_BIN")
	if bin == "" {
		t.Fatal("OVERLAY2_BIN must name the snapshotter server binary")
	}
	bin, err := filepath.Abs(bin)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(bin); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		t.Fatalf("OVERLAY2_BIN=%s is not an executable file (%v)", bin, err)
	}
	if os.Geteuid() != 0 {
		t.Fatal("the snapshotter suite mounts what the snapshotter returns: run it as root")
	}
	// Orphans of a server are reparented to us, so that stop can reap them.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatalf("PR_SET_CHILD_SUBREAPER: %v", err)
	}
	name := os.Getenv("SUITE_NAME")
	if name == "" {
		name = "overlay2-rs"
	}
	callTimeout := 2 * time.Minute
	if v := os.Getenv("SUITE_CALL_TIMEOUT"); v != "" {
		if callTimeout, err = time.ParseDuration(v); err != nil {
			t.Fatalf("SUITE_CALL_TIMEOUT: %v", err)
		}
	}
	logDir := os.Getenv("SUITE_LOG_DIR")
	if logDir != "" {
		if err := os.MkdirAll(logDir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("server: %s", bin)

	testsuite.SnapshotterSuite(t, name, func(ctx context.Context, root string) (snapshots.Snapshotter, func() error, error) {
		return startServer(ctx, bin, root, logDir, callTimeout)
	})
}

// server is one running snapshotter process.
type server struct {
	cmd     *exec.Cmd
	root    string
	logPath string
	exited  chan struct{} // closed once the process has been reaped
	waitErr error         // cmd.Wait's result, valid after exited is closed
}

func startServer(ctx context.Context, bin, root, logDir string, callTimeout time.Duration) (snapshots.Snapshotter, func() error, error) {
	home := filepath.Join(root, "home")
	sock := filepath.Join(root, "s.sock")
	if len(sock) >= len(unix.RawSockaddrUnix{}.Path) {
		return nil, nil, fmt.Errorf("socket path %s is too long for a unix socket (set TMPDIR shorter)", sock)
	}
	logPath := filepath.Join(root, "server.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, nil, err
	}
	defer logFile.Close() // the child holds its own copy

	cmd := exec.Command(bin, "--home", home, "serve", "containerd", "--socket", sock)
	cmd.Stdin = nil
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.Env = os.Environ()
	if os.Getenv("RUST_BACKTRACE") == "" {
		cmd.Env = append(cmd.Env, "RUST_BACKTRACE=1")
	}
	// Own process group, so that strays can be found and killed; die with us.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("start %s: %w", bin, err)
	}
	s := &server{cmd: cmd, root: root, logPath: logPath, exited: make(chan struct{})}
	go func() {
		s.waitErr = cmd.Wait()
		close(s.exited)
	}()
	log.G(ctx).Debugf("started %s (pid %d)", strings.Join(cmd.Args, " "), cmd.Process.Pid)

	fail := func(err error) (snapshots.Snapshotter, func() error, error) {
		select {
		case <-s.exited: // err already says how it ended
		default:
			if stopErr := s.stop(); stopErr != nil {
				err = fmt.Errorf("%v; %v", err, stopErr)
			}
		}
		if uerr := s.unmountLeftovers(ctx); uerr != nil {
			err = fmt.Errorf("%v; %v", err, uerr)
		}
		s.keepLog(ctx, logDir)
		return nil, nil, fmt.Errorf("%v\n--- server log (last %d lines) ---\n%s", err, logTailLines, tail(logPath, logTailLines))
	}

	if err := s.waitForSocket(sock); err != nil {
		return fail(err)
	}

	conn, err := grpc.Dial("unix://"+sock,
		grpc.WithInsecure(),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}),
		grpc.WithUnaryInterceptor(func(ctx context.Context, method string, req, reply interface{}, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			ctx, cancel := context.WithTimeout(ctx, callTimeout)
			defer cancel()
			return invoker(ctx, method, req, reply, cc, opts...)
		}),
	)
	if err != nil {
		return fail(fmt.Errorf("grpc dial %s: %w", sock, err))
	}
	sn := proxy.NewSnapshotter(snapshotsapi.NewSnapshotsClient(conn), proxyName)

	cleanup := func() error {
		var errs []string
		if err := conn.Close(); err != nil {
			errs = append(errs, fmt.Sprintf("close grpc connection: %v", err))
		}
		if err := s.stop(); err != nil {
			errs = append(errs, err.Error())
		}
		if err := s.unmountLeftovers(ctx); err != nil {
			errs = append(errs, err.Error())
		}
		s.keepLog(ctx, logDir)
		if len(errs) > 0 {
			return fmt.Errorf("%s\n--- server log (last %d lines) ---\n%s", strings.Join(errs, "; "), logTailLines, tail(logPath, logTailLines))
		}
		return nil
	}
	return sn, cleanup, nil
}

// waitForSocket waits until the socket accepts a connection, the server
// exits, or startTimeout passes.
func (s *server) waitForSocket(sock string) error {
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-s.exited:
			return fmt.Errorf("server exited before serving %s: %v", sock, describeExit(s.waitErr))
		default:
		}
		c, err := net.DialTimeout("unix", sock, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("server did not accept connections on %s within %v: %v", sock, startTimeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop sends SIGTERM, waits up to stopTimeout, then SIGKILLs the process
// group. The process is always reaped. It reports a server that had died
// before, exited with a failure, needed SIGKILL, or left processes behind.
func (s *server) stop() error {
	pid := s.cmd.Process.Pid
	var problems []string
	select {
	case <-s.exited:
		problems = append(problems, fmt.Sprintf("server died during the test: %v", describeExit(s.waitErr)))
	default:
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
			if !exitedCleanly(s.waitErr) {
				problems = append(problems, fmt.Sprintf("server exited badly after SIGTERM: %v", describeExit(s.waitErr)))
			}
		case <-time.After(stopTimeout):
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			_ = s.cmd.Process.Kill()
			<-s.exited
			problems = append(problems, fmt.Sprintf("server ignored SIGTERM for %v and was killed", stopTimeout))
		}
	}
	// Anything left in the server's process group is a stray child. As a
	// child subreaper we inherit such orphans and reap them here.
	for i := 0; i < 100; i++ {
		if err := syscall.Kill(-pid, 0); err != nil {
			break // ESRCH: the group is empty
		}
		if i == 0 {
			problems = append(problems, fmt.Sprintf("server left processes in its group %d: killed", pid))
		}
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		time.Sleep(10 * time.Millisecond)
		for {
			var ws unix.WaitStatus
			if wpid, err := unix.Wait4(-pid, &ws, unix.WNOHANG, nil); wpid <= 0 || err != nil {
				break
			}
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// unmountLeftovers lazily unmounts whatever is still mounted below the test's
// temporary directory (the parent of root), so that the suite's RemoveAll
// does not walk into mounts and nothing outlives the test. Mounts below root
// are the server's and are reported as an error; mounts elsewhere (the
// suite's work dir) are left behind by a failed test and only logged.
func (s *server) unmountLeftovers(ctx context.Context) error {
	root := s.root
	if r, err := filepath.EvalSymlinks(root); err == nil {
		root = r // mountinfo shows resolved paths
	}
	tmpDir := filepath.Dir(root)
	infos, err := mountinfo.GetMounts(mountinfo.PrefixFilter(tmpDir))
	if err != nil {
		return fmt.Errorf("read mountinfo: %w", err)
	}
	// Deepest first.
	sort.Slice(infos, func(i, j int) bool { return len(infos[i].Mountpoint) > len(infos[j].Mountpoint) })
	var ours []string
	for _, m := range infos {
		if m.Mountpoint == root || strings.HasPrefix(m.Mountpoint, root+"/") {
			ours = append(ours, m.Mountpoint)
		} else {
			log.G(ctx).Warnf("unmounting %s left by the suite (%s)", m.Mountpoint, m.FSType)
		}
		if err := unix.Unmount(m.Mountpoint, unix.MNT_DETACH); err != nil && err != unix.EINVAL && err != unix.ENOENT {
			log.G(ctx).Warnf("unmount %s: %v", m.Mountpoint, err)
		}
	}
	if len(ours) > 0 {
		return fmt.Errorf("server left %d mount(s) under its root after stopping: %s", len(ours), strings.Join(ours, ", "))
	}
	return nil
}

// keepLog copies the server log out of root (which the suite removes).
func (s *server) keepLog(ctx context.Context, logDir string) {
	if logDir == "" {
		return
	}
	dst := filepath.Join(logDir, filepath.Base(filepath.Dir(s.root))+".log")
	src, err := os.Open(s.logPath)
	if err != nil {
		return
	}
	defer src.Close()
	out, err := os.Create(dst)
	if err != nil {
		log.G(ctx).Warnf("keep server log: %v", err)
		return
	}
	defer out.Close()
	_, _ = io.Copy(out, src)
	log.G(ctx).Infof("server log: %s", dst)
}

func exitedCleanly(err error) bool {
	if err == nil {
		return true
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGTERM {
			return true // default SIGTERM disposition is acceptable
		}
	}
	return false
}

func describeExit(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	b = bytes.TrimRight(b, "\n")
	if len(b) == 0 {
		return "(empty)"
	}
	lines := bytes.Split(b, []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
