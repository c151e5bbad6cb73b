package verify

import (
	"errors"
	"fmt"

	"github.com/opencontainers/go-digest"

	"github.com/ferry-gitops/ferry/bundle"
)

// ErrAlreadyAccepted is returned for the bundle accepted last, presented again: nothing to do.
var ErrAlreadyAccepted = errors.New("bundle already accepted")

// rejected says which bundle an error is about: "bundle 3 rejected: …" (or "bundle rejected: …"
// before its root was read). A *bundle.Error in the chain also learns the bundle's sequence and
// root; any other error (an unreadable file, a failing medium, a full disk) is not the bundle's
// fault: it reads "bundle 3 not imported: …" and stays a plain error, so a caller's errors.As on
// *bundle.Error tells the two apart.
func rejected(seq uint64, root digest.Digest, err error) error {
	var clock *ClockError
	if err == nil || errors.Is(err, ErrAlreadyAccepted) || errors.As(err, &clock) {
		return err
	}
	e, ok := bundle.AsError(err)
	if !ok { // the medium or the disk failed: no verdict on the bundle
		if seq > 0 {
			return fmt.Errorf("bundle %d not imported: %w", seq, err)
		}
		return fmt.Errorf("bundle not imported: %w", err)
	}
	if e.Sequence != 0 || e.Root != "" {
		return err // already said
	}
	e.Sequence, e.Root = seq, root
	if seq > 0 {
		return fmt.Errorf("bundle %d rejected: %w", seq, err)
	}
	return fmt.Errorf("bundle rejected: %w", err)
}
