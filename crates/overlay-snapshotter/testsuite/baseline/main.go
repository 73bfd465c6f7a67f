// Command baseline serves containerd's own overlayfs snapshotter
// (github.com/containerd/containerd/snapshots/overlay) over the proxy
// snapshotter gRPC API (containerd.services.snapshots.v1.Snapshots) on a unix
// socket. It exists to validate the conformance harness in this directory
// before, and independently of, overlay2-rs's own server.
//
// It takes the same command line as overlay2-rs:
//
//	baseline --home DIR serve containerd --socket SOCK
//
// DIR is the snapshotter root (created if missing). The socket is created on
// start and removed on SIGTERM or SIGINT, after which the process exits 0.
package main

import (
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/contrib/snapshotservice"
	"github.com/containerd/containerd/snapshots/overlay"
	"google.golang.org/grpc"
)

const usage = "usage: baseline --home DIR serve containerd --socket SOCK"

// parseArgs accepts `--home DIR serve containerd --socket SOCK`, also with
// `--flag=value` spelling and the flags in any position.
func parseArgs(args []string) (home, sock string, err error) {
	var words []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		var name, val string
		switch {
		case strings.HasPrefix(a, "--home="), strings.HasPrefix(a, "--socket="):
			kv := strings.SplitN(a, "=", 2)
			name, val = kv[0], kv[1]
		case a == "--home" || a == "--socket":
			if i+1 >= len(args) {
				return "", "", fmt.Errorf("%s needs a value", a)
			}
			name, val = a, args[i+1]
			i++
		case strings.HasPrefix(a, "-"):
			return "", "", fmt.Errorf("unknown flag %q", a)
		default:
			words = append(words, a)
			continue
		}
		if name == "--home" {
			home = val
		} else {
			sock = val
		}
	}
	if len(words) != 2 || words[0] != "serve" || words[1] != "containerd" {
		return "", "", fmt.Errorf("expected the subcommand `serve containerd`, got %q", words)
	}
	if home == "" || sock == "" {
		return "", "", fmt.Errorf("--home and --socket are required")
	}
	return home, sock, nil
}

func main() {
	home, sock, err := parseArgs(os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "baseline: %v\n%s\n", err, usage)
		os.Exit(2)
	}
	if err := run(home, sock); err != nil {
		fmt.Fprintf(os.Stderr, "baseline: %v\n", err)
		os.Exit(1)
	}
}

func run(home, sock string) error {
	if err := os.MkdirAll(home, 0o700); err != nil {
		return err
	}
	sn, err := overlay.NewSnapshotter(home)
	if err != nil {
		return fmt.Errorf("overlay snapshotter on %s: %w", home, err)
	}
	defer sn.Close()

	// A stale socket from an earlier run would make Listen fail.
	if fi, err := os.Lstat(sock); err == nil && fi.Mode()&os.ModeSocket != 0 {
		_ = os.Remove(sock)
	}
	l, err := net.Listen("unix", sock)
	if err != nil {
		return err
	}
	defer os.Remove(sock)

	srv := grpc.NewServer()
	snapshotsapi.RegisterSnapshotsServer(srv, snapshotservice.FromSnapshotter(sn))

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	fmt.Fprintf(os.Stderr, "baseline: serving containerd overlayfs snapshotter of %s on %s\n", home, sock)

	select {
	case s := <-sigs:
		fmt.Fprintf(os.Stderr, "baseline: %v, stopping\n", s)
		stopped := make(chan struct{})
		go func() { srv.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(5 * time.Second):
			srv.Stop()
		}
		return nil
	case err := <-served:
		return err
	}
}
