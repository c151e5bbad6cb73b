package verify

import (
	"errors"
	"fmt"

	"github.com/opencontainers/go-digest"

	"github.com/ferry-gitops/ferry/bundle"
)

// Checks of the trust policy. A bundle's own structural checks (digest, size, missing, path,
// limit, …) keep their bundle.Check names.
const (
	CheckSignature = "signature"
	CheckKeyWindow = "key-validity"
	CheckExpired   = "expired"
	CheckRollback  = "rollback"
	CheckReplay    = "replay"
	CheckChain     = "chain"
	CheckBase      = "base"
)

// Rejection is why a bundle was refused: which bundle, which item, which check, and what to do.
type Rejection struct {
	// Sequence and Root identify the bundle, once its root was read (0 and "" before).
	Sequence uint64
	Root     digest.Digest
	// Item is what failed: an item's name, "root", "index.json", a part, or "" for the bundle.
	Item   string
	Check  string
	Detail string
	Fix    string
	// Err is the structural error underneath, when a bundle check failed.
	Err error
}

func (r *Rejection) Error() string {
	s := "bundle"
	if r.Sequence > 0 {
		s = fmt.Sprintf("bundle %d", r.Sequence)
	}
	s += " rejected: "
	if r.Err != nil {
		return s + r.Err.Error()
	}
	if r.Item != "" && r.Item != "root" {
		s += "item " + r.Item + ": "
	}
	s += r.Detail + " (" + r.Check + ")"
	if r.Fix != "" {
		s += "; " + r.Fix
	}
	return s
}

func (r *Rejection) Unwrap() error { return r.Err }

// AsRejection returns the Rejection in err's chain, if any.
func AsRejection(err error) (*Rejection, bool) {
	var r *Rejection
	ok := errors.As(err, &r)
	return r, ok
}

// ErrAlreadyAccepted is returned for the bundle accepted last, presented again: nothing to do.
var ErrAlreadyAccepted = errors.New("bundle already accepted")

// reject turns a reader's error into a Rejection that keeps the structural check's name.
func reject(seq uint64, root digest.Digest, err error) error {
	if err == nil || errors.Is(err, ErrAlreadyAccepted) {
		return err
	}
	if _, ok := AsRejection(err); ok {
		return err
	}
	r := &Rejection{Sequence: seq, Root: root, Err: err}
	if e, ok := bundle.AsError(err); ok {
		r.Item, r.Check, r.Detail, r.Fix = e.Item, string(e.Check), e.Detail, e.Fix
	}
	return r
}
