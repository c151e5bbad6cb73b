package verify

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ferry-gitops/ferry/bundle"
)

// TrustedKey is a key pinned in the agent's configuration, trusted within its validity window.
type TrustedKey struct {
	Key
	// NotBefore and NotAfter bound when signatures by this key are accepted (zero: unbounded).
	NotBefore, NotAfter time.Time
}

// validAt reports whether the key is trusted at t.
func (k TrustedKey) validAt(t time.Time) bool {
	return (k.NotBefore.IsZero() || !t.Before(k.NotBefore)) && (k.NotAfter.IsZero() || t.Before(k.NotAfter))
}

// Policy is what the agent trusts. Keys come only from its configuration (and statements
// signed by those keys), never from a bundle.
type Policy struct {
	Keys []TrustedKey
	// Threshold is how many distinct trusted keys must have signed a root (default 1).
	Threshold int
	// AllowGaps accepts a bundle whose previous-bundle digest is not the last one accepted,
	// as long as its sequence is greater.
	AllowGaps bool
	// Limits bound what the reader accepts before parsing or hashing.
	Limits bundle.Limits
	// Now is the agent's clock (default time.Now).
	Now func() time.Time
	// MinSequence is the operator's rollback floor: bundles at or below it are refused,
	// whatever the cache's state says (it survives losing the cache volume).
	MinSequence uint64
	// AgentFloor is the running agent's own version: a bundle carrying an older agent image is
	// refused (AgentVersions), so the first bundle after an install cannot downgrade the agent.
	// Ignored unless it is valid semver ("dev" builds have no floor).
	AgentFloor string
	// LastCreated is the creation time of the last accepted bundle: a clock that reads earlier
	// moved backwards, and nothing is decided against it (ClockError).
	LastCreated time.Time
	// Revoked are the fingerprints of keys retired by key statements: never trusted again.
	Revoked []string
}

// Run checks one bundle as it is read: its signatures and lineage are decided as soon as the
// root arrives (before any item's bytes), and its completeness when the read ends.
type Run struct {
	policy    Policy
	lastSeq   uint64
	lastRoot  digest.Digest
	sigs      *Collector
	next      bundle.Visitor
	root      ocispec.Descriptor
	bundle    *bundle.Bundle
	decidedOK bool
}

// Begin starts checking a bundle against p, given the last bundle accepted: its sequence and
// root (0 and "" when none was), which the caller keeps where no bundle can write them (the
// cache's state) and updates only after a bundle is accepted whole. next receives every
// verified file (for example, the cache's staging writer); it may be nil.
func (p Policy) Begin(lastSequence uint64, lastRoot digest.Digest, next bundle.Visitor) *Run {
	return &Run{policy: p, lastSeq: lastSequence, lastRoot: lastRoot, sigs: NewCollector(), next: next}
}

// Options returns the reader options that apply the policy's limits and this run's visitor.
func (r *Run) Options(extra ...bundle.ReadOption) []bundle.ReadOption {
	return append([]bundle.ReadOption{bundle.WithLimits(r.policy.Limits)}, append(extra, bundle.WithVisitor(r.visit))...)
}

func (r *Run) visit(ctx context.Context, e bundle.Entry, rd io.Reader) error {
	switch e.Item {
	case bundle.ItemAttachment, bundle.ItemRoot, bundle.ItemLayout, bundle.ItemIndex:
	default:
		if !r.decidedOK { // the reader refuses this first; a verifier never passes on an undecided byte
			return bundle.Reject(e.Item, e.Descriptor.Digest, bundle.CheckSignature, "pack the bundle with 'mirror pack --key'", "item blob before the root's trust was decided")
		}
	}
	kept, err := r.sigs.keep(e, rd)
	if err != nil {
		return err
	}
	if kept != nil {
		rd = bytes.NewReader(kept) // the collector read the attachment; pass its verified bytes on
	}
	if e.Item == bundle.ItemRoot && e.Descriptor.MediaType == ocispec.MediaTypeImageIndex && r.bundle == nil {
		data, err := io.ReadAll(rd)
		if err != nil {
			return err
		}
		b, err := bundle.ParseRoot(data)
		if err != nil {
			return err
		}
		r.root, r.bundle = e.Descriptor, b
		// Decide trust now: nothing of an untrusted bundle is read further.
		if err := r.decide(ctx); err != nil {
			return err
		}
		rd = bytes.NewReader(data)
	}
	if r.next != nil {
		return r.next(ctx, e, rd)
	}
	return nil
}

// Finish turns the reader's outcome into the verdict: the Result of a bundle accepted whole
// (whose Bundle.Sequence and Root.Digest are what the caller stores as the last accepted), or
// an error that says which bundle was rejected and holds a *bundle.Error naming the item and
// the check; an error with no *bundle.Error in its chain was not the bundle's fault.
func (r *Run) Finish(res *bundle.Result, err error) (*bundle.Result, error) {
	seq, root := uint64(0), digest.Digest("")
	if r.bundle != nil {
		seq, root = r.bundle.Sequence, r.root.Digest
	}
	if err != nil {
		return nil, rejected(seq, root, err)
	}
	if !r.decidedOK || res.Root.Digest != r.root.Digest {
		return nil, rejected(seq, root, bundle.Reject(bundle.ItemRoot, "", bundle.CheckSignature, "", "the root was never checked"))
	}
	return res, nil
}

func (r *Run) now() time.Time {
	if r.policy.Now != nil {
		return r.policy.Now()
	}
	return time.Now()
}

// rejection is the error of the root failing a trust check.
func (r *Run) rejection(check bundle.Check, detail, fix string) error {
	return rejected(r.bundle.Sequence, r.root.Digest, bundle.Reject(bundle.ItemRoot, "", check, fix, "%s", detail))
}

// decide applies the policy to the root: signatures, lifetime, order and lineage.
func (r *Run) decide(ctx context.Context) error {
	b, now := r.bundle, r.now()
	if err := r.clock(now); err != nil {
		return err
	}
	if err := r.signatures(ctx, now); err != nil {
		return err
	}
	if !now.Before(b.Expires) {
		return r.rejection(bundle.CheckExpired, fmt.Sprintf("expired at %s (now %s)", b.Expires.Format(time.RFC3339), now.UTC().Format(time.RFC3339)),
			"pack a fresh bundle; an expired one is never accepted (freeze protection)")
	}
	if err := r.floor(); err != nil {
		return err
	}
	lastSeq, lastRoot := r.lastSeq, r.lastRoot
	switch {
	case lastSeq == 0:
	case b.Sequence < lastSeq:
		return r.rejection(bundle.CheckRollback, fmt.Sprintf("sequence %d < last accepted %d", b.Sequence, lastSeq), "see 'sync status'")
	case b.Sequence == lastSeq && r.root.Digest == lastRoot:
		return ErrAlreadyAccepted
	case b.Sequence == lastSeq:
		return r.rejection(bundle.CheckReplay, fmt.Sprintf("sequence %d was already accepted as %s", b.Sequence, lastRoot), "see 'sync status'")
	case !r.policy.AllowGaps && b.Previous != lastRoot:
		return r.rejection(bundle.CheckChain, fmt.Sprintf("previous bundle %q is not the last accepted %s", b.Previous, lastRoot),
			"import the bundles in between, or allow gaps in the agent's configuration")
	}
	if b.Base != "" && b.Base != lastRoot && !r.policy.AllowGaps {
		return r.rejection(bundle.CheckBase, fmt.Sprintf("delta against %s, but the last accepted bundle is %s", b.Base, lastRoot), "import the base bundle first")
	}
	if err := r.keyStatements(ctx); err != nil {
		return err
	}
	r.decidedOK = true
	return nil
}

// signatures counts the distinct trusted keys (by Fingerprint, never by name) whose signature
// over the root verifies: one key pinned twice counts once towards the threshold.
func (r *Run) signatures(ctx context.Context, now time.Time) error {
	threshold := r.policy.Threshold
	if threshold <= 0 {
		threshold = 1
	}
	atts := r.sigs.Attachments()
	if len(atts) == 0 {
		return r.rejection(bundle.CheckSignature, "not signed", "sign it with 'mirror pack --key'")
	}
	var signers, outOfWindow, duplicates []string
	seen := map[string]string{} // Fingerprint -> name of the first key that counted for it
	for _, k := range r.policy.Keys {
		if RootSignature(ctx, r.sigs, r.root, atts, []Key{k.Key}) != nil {
			continue
		}
		if !k.validAt(now) {
			outOfWindow = append(outOfWindow, k.Name)
			continue
		}
		id, err := Fingerprint(k.Verifier)
		if err != nil {
			return r.rejection(bundle.CheckSignature, fmt.Sprintf("key %s: %v", k.Name, err), "pin a public key the agent can encode")
		}
		if first, dup := seen[id]; dup {
			duplicates = append(duplicates, fmt.Sprintf("%s is the same key as %s", k.Name, first))
			continue
		}
		seen[id] = k.Name
		signers = append(signers, k.Name)
	}
	switch {
	case len(signers) >= threshold:
		return nil
	case len(duplicates) > 0:
		return r.rejection(bundle.CheckSignature, fmt.Sprintf("signed by %d distinct trusted key(s) (%s), %d required; %s (same fingerprint, the SHA-256 of the public key), counted once",
			len(signers), strings.Join(signers, ", "), threshold, strings.Join(duplicates, "; ")),
			"pin distinct keys for a threshold, and add signatures by more of them")
	case len(signers) == 0 && len(outOfWindow) > 0:
		return r.rejection(bundle.CheckKeyWindow, "signed by "+strings.Join(outOfWindow, ", ")+", outside its validity window", "sign with a current key, or introduce one with a key statement")
	case len(signers) == 0:
		return r.rejection(bundle.CheckSignature, "no signature by a trusted key", "sign with a key pinned in the agent's configuration")
	}
	return r.rejection(bundle.CheckSignature, fmt.Sprintf("signed by %d trusted key(s) (%s), %d required", len(signers), strings.Join(signers, ", "), threshold), "add signatures by more of the pinned keys")
}
