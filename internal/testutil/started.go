package testutil

import (
	"context"
	"errors"
	"os/exec"
	"sync"
	"time"

	"github.com/dynia/dynia/internal/poll"
)

// errExited is waitStarted's answer when the process exited first.
var errExited = errors.New("exited during start")

// waitStarted polls ready (internal/poll's backoff) for at most timeout
// until it holds, for a server a test started: versitygw, docker-registry,
// Pebble, dockerd. exited is closed when the process has exited; that ends
// the wait at once (ready's ctx is cancelled too) with errExited. Otherwise
// the answer is nil or ready's last error.
func waitStarted(exited <-chan struct{}, timeout time.Duration, ready func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	go func() {
		select {
		case <-exited:
			cancel()
		case <-ctx.Done():
		}
	}()
	err := poll.Until(ctx, func() error {
		select {
		case <-exited:
			return poll.Stop(errExited)
		default:
		}
		return ready(ctx)
	})
	if err == nil {
		return nil
	}
	select {
	case <-exited:
		return errExited
	default:
		return err
	}
}

// child is a server process a test started (versitygw, docker-registry,
// Pebble, dockerd, containerd): exited is closed once it has exited, err
// is then its wait error.
type child struct {
	cmd    *exec.Cmd
	exited chan struct{}
	err    error
	once   sync.Once
}

// startChild starts cmd (its output already set) and waits for it in the
// background.
func startChild(cmd *exec.Cmd) (*child, error) {
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{cmd: cmd, exited: make(chan struct{})}
	go func() { c.err = cmd.Wait(); close(c.exited) }()
	return c, nil
}

// kill SIGKILLs the process (our own child, by PID; once) and waits for
// it to exit.
func (c *child) kill() {
	c.once.Do(func() {
		_ = c.cmd.Process.Kill()
		<-c.exited
	})
}
