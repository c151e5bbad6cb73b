package bundle

import (
	"errors"
	"fmt"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/errdef"
)

// Check names the rule a bundle broke: a rule of the format, or a trust decision of the
// reader's policy.
type Check string

// The structural checks a reader makes. docs/bundle-format.md says what each one covers.
const (
	CheckDigest    Check = "digest"
	CheckSize      Check = "size"
	CheckMissing   Check = "missing"
	CheckUnexpect  Check = "unexpected"
	CheckLimit     Check = "limit"
	CheckPath      Check = "path"
	CheckMediaType Check = "media-type"
	CheckFormat    Check = "format"
	CheckOrder     Check = "order"
	CheckTruncated Check = "truncated"
	CheckPart      Check = "part"
)

// The trust checks of the sync side's policy (package verify decides them when the root
// arrives; docs/design/rejections.md).
const (
	// CheckSignature: the root is not signed by enough keys pinned in the configuration.
	CheckSignature Check = "signature"
	// CheckKeyWindow: the root is signed only by keys outside their validity window.
	CheckKeyWindow Check = "key-validity"
	// CheckExpired: the bundle's expiry time has passed (freeze protection).
	CheckExpired Check = "expired"
	// CheckRollback: the bundle's sequence is below the last accepted one.
	CheckRollback Check = "rollback"
	// CheckReplay: the sequence was already accepted as another root.
	CheckReplay Check = "replay"
	// CheckChain: the bundle's previous root is not the last accepted one.
	CheckChain Check = "chain"
	// CheckBase: a delta's base is not the last accepted bundle.
	CheckBase Check = "base"
	// CheckKeyStatement: a key statement the bundle carries is not signed by a threshold of
	// the trusted keys, or cannot be applied.
	CheckKeyStatement Check = "key-statement"
	// CheckAgentRollback: the bundle carries a Ferry agent image older than the newest one
	// accepted (or than the running agent), or one whose version labels are missing, invalid
	// or disagree.
	CheckAgentRollback Check = "agent-rollback"
)

// Pseudo-items: what an Error (and an Entry) names when the thing concerned is not an item.
const (
	// ItemLayout is the layout's oci-layout file.
	ItemLayout = ocispec.ImageLayoutFile
	// ItemIndex is the layout index, index.json.
	ItemIndex = ocispec.ImageIndexFile
	// ItemRoot is the bundle's signed root.
	ItemRoot = "root"
	// ItemAttachment is a manifest attached to the root (its signatures) and the blobs under it.
	ItemAttachment = "attachment"
	// ItemPartList is the part list of a split tar.
	ItemPartList = "part list"
)

// Error is a rejection, structural or of trust: what was wrong (Item, Blob), which check
// failed, and what to do. It is the one error type a caller branches on to tell "the bundle
// is bad" from "reading it failed" (errors.As).
type Error struct {
	// Item is the item the blob belongs to, a pseudo-item (ItemIndex, ItemRoot,
	// ItemAttachment, ItemPartList, ItemLayout) or a part's name.
	Item string
	// Blob is the blob concerned, when there is one.
	Blob   digest.Digest
	Check  Check
	Detail string
	Fix    string
	// Sequence and Root identify the bundle once its root was read (0 and "" before, and for
	// errors of a reader that decides no trust).
	Sequence uint64
	Root     digest.Digest
	// label is how Error names Item: "item nginx", "index.json", "part bundle.tar.part-00002".
	label string
}

func (e *Error) Error() string {
	s := e.label
	if s == "" {
		s = e.Item
	}
	if e.Blob != "" {
		if s != "" {
			s += ": "
		}
		s += "blob " + string(e.Blob)
	}
	if s != "" {
		s += ": "
	}
	s += e.Detail + " (check: " + string(e.Check) + ")"
	if e.Fix != "" {
		s += "; fix: " + e.Fix
	}
	return s
}

// Unwrap lets errors.Is match a limit check with oras-go's errdef.ErrSizeExceedsLimit.
func (e *Error) Unwrap() error {
	if e.Check == CheckLimit {
		return errdef.ErrSizeExceedsLimit
	}
	return nil
}

// Common fixes.
const (
	fixRecopy = "the bundle was altered or damaged in transit; copy it again from the source"
	fixRepack = "the bundle is malformed; pack it again with 'mirror pack'"
	fixLimit  = "if the bundle is genuine, raise the limit in the reader's configuration"
)

// Reject returns the Error of item failing check: Detail formatted from format and args, and
// what to do.
func Reject(item string, blob digest.Digest, check Check, fix string, format string, args ...any) *Error {
	return errorf(item, blob, check, fix, format, args...)
}

func errorf(item string, blob digest.Digest, check Check, fix string, format string, args ...any) *Error {
	e := &Error{Item: item, Blob: blob, Check: check, Detail: fmt.Sprintf(format, args...), Fix: fix}
	switch item {
	case "", ItemIndex, ItemLayout, ItemRoot, ItemAttachment:
	default:
		e.label = "item " + item
	}
	return e
}

// partErrorf is errorf for a part of a split tar, or its list (ItemPartList).
func partErrorf(part string, check Check, fix string, format string, args ...any) *Error {
	e := errorf(part, "", check, fix, format, args...)
	if part != ItemPartList {
		e.label = "part " + part
	} else {
		e.label = part
	}
	return e
}

// AsError returns the *Error in err's chain, if any.
func AsError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}
