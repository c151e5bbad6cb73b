package cache_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"

	"github.com/ferry-gitops/ferry/cache"
	"github.com/ferry-gitops/ferry/internal/testbundle"
)

func blobFile(dir string, d ocispec.Descriptor) string {
	return filepath.Join(dir, "blobs", "sha256", d.Digest.Encoded())
}

// Every read of the cache verifies: a blob whose bytes changed on disk fails at its end with a
// digest error, never returning its last bytes; one of another size fails when opened.
func TestFetchVerifies(t *testing.T) {
	ctx := context.Background()
	sign, policy := keyPair(t)
	b1 := testbundle.New(t, 1, "", sign)
	layer := b1.Layer
	want, err := os.ReadFile(b1.BlobPath(layer.Digest))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		damage  func(path string)
		openErr []error // Fetch fails with these
		readErr []error // or reading to the end does
	}{
		{"intact", func(string) {}, nil, nil},
		{"byte flipped", func(p string) { testbundle.Flip(t, p, 100) }, nil, []error{cache.ErrDamaged, content.ErrMismatchedDigest}},
		{"last byte flipped", func(p string) { testbundle.Flip(t, p, len(want)-1) }, nil, []error{cache.ErrDamaged, content.ErrMismatchedDigest}},
		{"truncated", func(p string) { os.Truncate(p, int64(len(want)-1)) }, []error{cache.ErrDamaged}, nil},
		{"longer", func(p string) { os.WriteFile(p, append(bytes.Clone(want), 'x'), 0o644) }, []error{cache.ErrDamaged}, nil},
		{"missing", func(p string) { os.Remove(p) }, []error{cache.ErrNotFound, errdef.ErrNotFound, fs.ErrNotExist}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			c := open(t, dir)
			if _, err := c.Import(ctx, fromDir(b1.Dir), policy); err != nil {
				t.Fatal(err)
			}
			tc.damage(blobFile(dir, layer))
			snap, err := c.Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			for _, fetch := range []func(context.Context, ocispec.Descriptor) (io.ReadCloser, error){c.Fetch, snap.Fetch} {
				rc, err := fetch(ctx, layer)
				if !matchesAll(err, tc.openErr) {
					t.Fatalf("Fetch: %v, want %v", err, tc.openErr)
				}
				if err != nil {
					continue
				}
				first := make([]byte, 10)
				if _, err := io.ReadFull(rc, first); err != nil {
					t.Fatalf("first bytes: %v (a damaged blob fails at its end, not before)", err)
				}
				rest, err := io.ReadAll(rc)
				rc.Close()
				if !matchesAll(err, tc.readErr) {
					t.Fatalf("read: %v, want %v", err, tc.readErr)
				}
				got := append(first, rest...)
				if err != nil && len(got) >= len(want) {
					t.Fatalf("a damaged blob returned all %d bytes", len(got))
				}
				if err == nil && !bytes.Equal(got, want) {
					t.Fatal("read other bytes than the blob's")
				}
			}
			_, err = snap.ReadAll(ctx, layer, layer.Size)
			if want := append(tc.openErr, tc.readErr...); !matchesAll(err, want) {
				t.Fatalf("ReadAll: %v, want %v", err, want)
			}
		})
	}
}

func matchesAll(err error, want []error) bool {
	if len(want) == 0 {
		return err == nil
	}
	for _, w := range want {
		if !errors.Is(err, w) {
			return false
		}
	}
	return true
}

// ReadAll refuses a blob larger than its limit before reading it.
func TestReadAllLimit(t *testing.T) {
	ctx := context.Background()
	sign, policy := keyPair(t)
	b1 := testbundle.New(t, 1, "", sign)
	c := open(t, t.TempDir())
	if _, err := c.Import(ctx, fromDir(b1.Dir), policy); err != nil {
		t.Fatal(err)
	}
	snap, err := c.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := snap.ReadAll(ctx, b1.Layer, b1.Layer.Size-1); !errors.Is(err, errdef.ErrSizeExceedsLimit) {
		t.Fatalf("ReadAll over the limit: %v", err)
	}
	if b, err := snap.ReadAll(ctx, b1.Layer, b1.Layer.Size); err != nil || int64(len(b)) != b1.Layer.Size {
		t.Fatalf("ReadAll at the limit: %d bytes, %v", len(b), err)
	}
}

// A Blob is an io.ReadSeeker and io.ReaderAt (what Range requests need); a whole read from its
// start is verified, ranges are read as they are on disk.
func TestBlobRandomAccess(t *testing.T) {
	ctx := context.Background()
	sign, policy := keyPair(t)
	b1 := testbundle.New(t, 1, "", sign)
	dir := t.TempDir()
	c := open(t, dir)
	if _, err := c.Import(ctx, fromDir(b1.Dir), policy); err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(b1.BlobPath(b1.Layer.Digest))
	snap, err := c.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := snap.Open(ctx, b1.Layer)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var _ io.ReadSeeker = b
	var _ io.ReaderAt = b
	if b.Size() != int64(len(want)) {
		t.Fatalf("Size %d, want %d", b.Size(), len(want))
	}
	p := make([]byte, 100)
	if _, err := b.ReadAt(p, 1000); err != nil || !bytes.Equal(p, want[1000:1100]) {
		t.Fatalf("ReadAt: %v", err)
	}
	if end, err := b.Seek(0, io.SeekEnd); err != nil || end != int64(len(want)) {
		t.Fatalf("Seek to the end: %d %v", end, err)
	}
	if _, err := b.Seek(-50, io.SeekEnd); err != nil {
		t.Fatal(err)
	}
	if tail, err := io.ReadAll(b); err != nil || !bytes.Equal(tail, want[len(want)-50:]) {
		t.Fatalf("read the tail: %v", err)
	}
	if _, err := b.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	if all, err := io.ReadAll(b); err != nil || !bytes.Equal(all, want) || b.Err() != nil {
		t.Fatalf("read whole after seeking back: %v %v", err, b.Err())
	}

	// Damaged: ranges read what is on disk; a whole read from the start fails at the end.
	testbundle.Flip(t, blobFile(dir, b1.Layer), 5)
	d, err := snap.Open(ctx, b1.Layer)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := d.ReadAt(p, 1000); err != nil || !bytes.Equal(p, want[1000:1100]) {
		t.Fatalf("ReadAt of an undamaged range: %v", err)
	}
	if _, err := io.ReadAll(d); !errors.Is(err, content.ErrMismatchedDigest) || !errors.Is(d.Err(), cache.ErrDamaged) {
		t.Fatalf("whole read of a damaged blob: %v, Err %v", err, d.Err())
	}
}

// A snapshot reads the bundle that was current when it was taken, whatever commits after; once
// gc collected that bundle, its blobs that no kept bundle shares are gone, and the error says so.
func TestSnapshotAcrossImportAndGC(t *testing.T) {
	ctx := context.Background()
	sign, policy := keyPair(t)
	c := open(t, t.TempDir())
	empty, err := c.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if empty.Record() != nil || empty.State().Sequence != 0 {
		t.Fatalf("snapshot of an empty cache: %+v", empty.Record())
	}
	if _, err := empty.Root(); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("root of an empty snapshot: %v", err)
	}
	b1 := testbundle.New(t, 1, "", sign)
	if _, err := c.Import(ctx, fromDir(b1.Dir), policy); err != nil {
		t.Fatal(err)
	}
	s1, err := c.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if root, err := s1.Root(); err != nil || root.Digest != b1.Root.Digest || root.Size != b1.Root.Size {
		t.Fatalf("root %+v %v, want %+v", root, err, b1.Root)
	}
	b2 := testbundle.New(t, 2, b1.Root.Digest, nil)
	b2.Bundle.Items = b2.Bundle.Items[1:] // bundle 2 no longer carries "app" and its layer
	b2.Write(t, sign)
	if _, err := c.Import(ctx, fromDir(b2.Dir), policy); err != nil {
		t.Fatal(err)
	}
	s2, err := c.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if s1.Record().Sequence != 1 || s1.State().Root != b1.Root.Digest || s2.Record().Sequence != 2 {
		t.Fatalf("snapshots: %d and %d, want 1 and 2", s1.Record().Sequence, s2.Record().Sequence)
	}
	if _, err := s1.ReadAll(ctx, b1.Layer, b1.Layer.Size); err != nil {
		t.Fatalf("bundle 1 is kept: %v", err)
	}
	if _, err := c.GC(ctx, 1); err != nil {
		t.Fatal(err)
	}
	_, err = s1.Fetch(ctx, b1.Layer)
	if !errors.Is(err, cache.ErrNotFound) || !strings.Contains(err.Error(), "collected") {
		t.Fatalf("a collected bundle's blob: %v", err)
	}
	if _, err := s2.ReadAll(ctx, b2.Root, b2.Root.Size); err != nil {
		t.Fatalf("the current bundle: %v", err)
	}
}
