package bundle_test

import (
	"errors"
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/ferry-gitops/ferry/bundle"
)

// failingFS serves files whose reads fail, as a medium that breaks mid-read does.
type failingFS struct{ fstest.MapFS }

type failingFile struct{ fs.File }

var errMedium = errors.New("connection reset by peer")

func (f failingFile) Read([]byte) (int, error) { return 0, errMedium }

func (f failingFS) Open(name string) (fs.File, error) {
	file, err := f.MapFS.Open(name)
	if err != nil {
		return nil, err
	}
	return failingFile{file}, nil
}

// A part list that cannot be read (the medium failed) is the medium's error, not a verdict on the
// bundle; a part list over its limit is the limit check.
func TestPartListReadFailureIsNoRejection(t *testing.T) {
	_, _, err := bundle.OpenParts(failingFS{fstest.MapFS{"b.parts.json": {Data: []byte("{}")}}}, "b.parts.json", bundle.Limits{})
	if err == nil || !errors.Is(err, errMedium) {
		t.Fatalf("OpenParts on a failing medium: %v, want the medium's error", err)
	}
	if e, ok := bundle.AsError(err); ok {
		t.Fatalf("a failed read of the part list was reported as check %q (%v): a rejection blames the bundle for the medium", e.Check, err)
	}
	big := fstest.MapFS{"b.parts.json": {Data: []byte(strings.Repeat(" ", 2048))}}
	_, _, err = bundle.OpenParts(big, "b.parts.json", bundle.Limits{MaxPartListSize: 1024})
	if e, ok := bundle.AsError(err); !ok || e.Check != bundle.CheckLimit {
		t.Fatalf("part list over its limit: %v, want check %q", err, bundle.CheckLimit)
	}
}
