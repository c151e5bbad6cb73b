package verify

import (
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/ferry-gitops/ferry/bundle"
)

// ClockError is the agent's clock reading earlier than the creation time of the last bundle it
// accepted: the clock moved backwards, and expiry cannot be judged against it. It is not the
// bundle's fault (no *bundle.Error): the bundle is tried again once the clock is right.
type ClockError struct {
	Now, LastCreated time.Time
	// Bundle is the bundle being decided.
	Sequence uint64
	Root     digest.Digest
}

func (e *ClockError) Error() string {
	return fmt.Sprintf("bundle %d (%s) not decided: the agent's clock reads %s, before %s, when the last accepted bundle was created: "+
		"the clock moved backwards; set the node's clock right (NTP), nothing is imported until it is",
		e.Sequence, e.Root, e.Now.UTC().Format(time.RFC3339), e.LastCreated.UTC().Format(time.RFC3339))
}

// clock refuses to decide against a clock earlier than the last accepted bundle's creation.
func (r *Run) clock(now time.Time) error {
	if last := r.policy.LastCreated; !last.IsZero() && now.Before(last) {
		return &ClockError{Now: now, LastCreated: last, Sequence: r.bundle.Sequence, Root: r.root.Digest}
	}
	return nil
}

// floor refuses a bundle at or below the configured MinSequence.
func (r *Run) floor() error {
	if min := r.policy.MinSequence; min > 0 && r.bundle.Sequence <= min {
		return r.rejection(bundle.CheckRollback, fmt.Sprintf("sequence %d is at or below the configured floor minSequence %d", r.bundle.Sequence, min),
			"pack a bundle with a greater sequence, or lower minSequence in the agent's configuration")
	}
	return nil
}
