package medium

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/ferry-gitops/ferry/bundle"
)

// ErrStalled is the cause of a read a stall watch stopped: the medium sent no byte of the
// bundle for the stall timeout (WithStallTimeout). It is the medium's failure, not the bundle's.
var ErrStalled = errors.New("the medium sent nothing")

// stallWatch cancels a read's context once no blob byte arrived for its timeout: a medium that
// sends a byte a minute (a hostile registry, a failing drive) is stopped, not waited on forever.
type stallWatch struct {
	last   atomic.Int64 // UnixNano of the last progress
	cancel context.CancelCauseFunc
	done   chan struct{}
}

// watchStall returns ctx with a stall watch of timeout d over it, and the reader option that
// feeds it; stop ends the watch. With d 0 there is no watch.
func watchStall(ctx context.Context, d time.Duration) (context.Context, []bundle.ReadOption, func()) {
	if d <= 0 {
		return ctx, nil, func() {}
	}
	ctx, cancel := context.WithCancelCause(ctx)
	w := &stallWatch{cancel: cancel, done: make(chan struct{})}
	w.last.Store(time.Now().UnixNano())
	go func() {
		tick := time.NewTicker(max(d/8, 10*time.Millisecond))
		defer tick.Stop()
		for {
			select {
			case <-w.done:
				return
			case <-ctx.Done():
				return
			case now := <-tick.C:
				if now.Sub(time.Unix(0, w.last.Load())) > d {
					cancel(fmt.Errorf("%w for longer than the stall timeout %s: the read was stopped (retried later)", ErrStalled, d))
					return
				}
			}
		}
	}()
	progress := bundle.WithProgress(func(int64) { w.last.Store(time.Now().UnixNano()) })
	return ctx, []bundle.ReadOption{progress}, func() { close(w.done); cancel(nil) }
}

// stalled returns the stall watch's cause if it stopped the read under ctx (and its parent did
// not end).
func stalled(ctx context.Context) error {
	if cause := context.Cause(ctx); errors.Is(cause, ErrStalled) {
		return cause
	}
	return nil
}
