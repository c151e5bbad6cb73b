package bundle

import (
	"errors"
	"fmt"

	"github.com/opencontainers/go-digest"
)

// Check names the rule a bundle broke.
type Check string

// The checks a reader makes. docs/bundle-format.md says what each one covers.
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

// Error is a rejection: what was wrong (Item, Blob), which check failed, and what to do.
type Error struct {
	// Item is the item the blob belongs to, or "index.json", "root", "attachment", a part name.
	Item string
	// Blob is the blob concerned, when there is one.
	Blob   digest.Digest
	Check  Check
	Detail string
	Fix    string
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

// Common fixes.
const (
	fixRecopy = "the bundle was altered or damaged in transit; copy it again from the source"
	fixRepack = "the bundle is malformed; pack it again with 'mirror pack'"
	fixLimit  = "if the bundle is genuine, raise the limit in the reader's configuration"
)

func errorf(item string, blob digest.Digest, check Check, fix string, format string, args ...any) *Error {
	e := &Error{Item: item, Blob: blob, Check: check, Detail: fmt.Sprintf(format, args...), Fix: fix}
	switch item {
	case "", IndexFile, LayoutFile, "root", "attachment":
	default:
		e.label = "item " + item
	}
	return e
}

// partErrorf is errorf for a part of a split tar, or its list ("part list").
func partErrorf(part string, check Check, fix string, format string, args ...any) *Error {
	e := errorf(part, "", check, fix, format, args...)
	if part != "part list" {
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
