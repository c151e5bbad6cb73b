package medium_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/internal/testenv"
	"github.com/ferry-gitops/ferry/medium"
)

// WriteAll writes a tar, its parts, a bucket and a registry tag from one verified read of the
// layout: every blob is read once (the observer sees each once), and each output reads back
// as the same bundle, the tar byte for byte what bundle.WriteTar makes.
func TestWriteAllOnePass(t *testing.T) {
	ctx := context.Background()
	c, bucket := newBucket(t)
	reg := testenv.NewRegistry(t)
	repo := newRepo(t, reg, "ferry/bundles")
	tb := newTestBundle(t, 7)
	out := t.TempDir()
	locs := []medium.Location{
		medium.TarFile(filepath.Join(out, "tar", "bundle.tar")),
		medium.Parts(filepath.Join(out, "parts"), "bundle.tar").Split(8 << 10),
		medium.S3(bucket, "site", "bundle.tar").Split(8 << 10),
		regLoc(repo, "edge"),
	}
	reads := map[string]int{}
	observe := bundle.WithObserver(func(e bundle.Entry) { reads[e.Path]++ })
	ws, err := medium.WriteAll(ctx, locs, tb.dir, medium.WithS3Client(c), plainHTTP(repo), medium.WithReadOptions(observe))
	if err != nil {
		t.Fatal(err)
	}
	for p, n := range reads {
		if n != 1 {
			t.Fatalf("%s read %d times, want once", p, n)
		}
	}
	if len(reads) != len(blobFiles(t, tb.dir))+2 {
		t.Fatalf("%d files read, the layout has %d blobs and two layout files", len(reads), len(blobFiles(t, tb.dir)))
	}
	var want bytes.Buffer
	if _, err := bundle.WriteTar(ctx, &want, tb.dir); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(out, "tar", "bundle.tar")); err != nil || !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("the tar differs from bundle.WriteTar's (%v)", err)
	}
	for i, w := range ws {
		if w.Root.Digest != tb.root.Digest {
			t.Fatalf("%s: root %s, want %s", w, w.Root.Digest, tb.root.Digest)
		}
		res, err := medium.Read(ctx, locs[i], medium.WithS3Client(c), plainHTTP(repo))
		if err != nil {
			t.Fatalf("%s: %v", w, err)
		}
		if res.Root.Digest != tb.root.Digest {
			t.Fatalf("%s reads back root %s", w, res.Root.Digest)
		}
		t.Logf("wrote %s", w)
	}
	if ws[1].Parts == nil || ws[2].Parts == nil || ws[1].Parts.Digest != ws[2].Parts.Digest || !strings.HasSuffix(ws[2].String(), "parts)") {
		t.Fatalf("the folder's and the bucket's parts differ: %+v, %+v", ws[1].Parts, ws[2].Parts)
	}
}

// A bundle that is not complete is written nowhere: no tar file, no part list, no tag.
func TestWriteAllRefusesIncompleteBundle(t *testing.T) {
	ctx := context.Background()
	tb := newTestBundle(t, 8)
	if err := os.Remove(blobPath(tb.dir, tb.layer.Digest)); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	locs := []medium.Location{medium.TarFile(filepath.Join(out, "bundle.tar")), medium.Parts(out, "bundle.tar").Split(8 << 10)}
	_, err := medium.WriteAll(ctx, locs, tb.dir)
	if e, ok := bundle.AsError(err); !ok || e.Check != bundle.CheckMissing || e.Blob != tb.layer.Digest {
		t.Fatalf("want the missing blob %s named, got %v", tb.layer.Digest, err)
	}
	for _, name := range []string{"bundle.tar", "bundle.tar.parts.json"} {
		if _, err := os.Stat(filepath.Join(out, name)); !os.IsNotExist(err) {
			t.Fatalf("%s written for an incomplete bundle (%v)", name, err)
		}
	}
	entries, _ := os.ReadDir(out)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			t.Fatalf("temporary file %s left behind", e.Name())
		}
	}
}

// A read that fails because the medium does is a *medium.Error, not a bundle defect: here a
// part that the folder cannot read (a directory stands in its place: reading it fails with
// EISDIR, as a failing disk would fail a read).
func TestReadTellsMediumFailures(t *testing.T) {
	ctx := context.Background()
	tb := newTestBundle(t, 9)
	out := t.TempDir()
	w, err := medium.Write(ctx, medium.Parts(out, "bundle.tar").Split(8<<10), tb.dir)
	if err != nil {
		t.Fatal(err)
	}
	part := filepath.Join(out, w.Parts.Parts[1].Name)
	data, err := os.ReadFile(part)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(part); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(part, 0o755); err != nil {
		t.Fatal(err)
	}
	_, err = medium.Read(ctx, w.Location)
	if _, ok := medium.AsError(err); !ok {
		t.Fatalf("want a *medium.Error for the unreadable part, got %v", err)
	}
	if _, ok := bundle.AsError(err); ok {
		t.Fatalf("a medium failure unwraps to a bundle defect: %v", err)
	}
	if !strings.HasPrefix(err.Error(), w.Location.String()+": ") {
		t.Fatalf("the error does not name the location %s: %v", w.Location, err)
	}
	t.Logf("medium failure: %v", err)
	if err := os.Remove(part); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(part, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := medium.Read(ctx, w.Location); err != nil {
		t.Fatalf("read once the part is whole again: %v", err)
	}
}
