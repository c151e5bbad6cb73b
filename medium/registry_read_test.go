package medium_test

import (
	"context"
	"testing"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/internal/testenv"
	"github.com/ferry-gitops/ferry/medium"
)

// A bundle is read straight from a registry, every blob verified as it streams, and a blob the
// registry lost is named.
func TestReadRegistry(t *testing.T) {
	reg := testenv.NewRegistry(t)
	repo := newRepo(t, reg, "ferry/bundles")
	ctx := context.Background()
	tb := newTestBundle(t, 3)
	if _, err := pushTo(ctx, repo, tb.dir, "edge"); err != nil {
		t.Fatal(err)
	}
	var blobs int
	count := func(e bundle.Entry) {
		if e.Path != bundle.LayoutFile && e.Path != bundle.IndexFile {
			blobs++
		}
	}
	res, err := medium.Read(ctx, regLoc(repo, "edge"), plainHTTP(repo), medium.WithReadOptions(bundle.WithObserver(count)))
	if err != nil {
		t.Fatal(err)
	}
	if res.Root.Digest != tb.root.Digest || len(res.Attachments) != 2 || blobs != res.Blobs || blobs != len(blobFiles(t, tb.dir)) {
		t.Fatalf("read root %s with %d attachments and %d blobs (%d visited); the bundle has %d", res.Root.Digest, len(res.Attachments), res.Blobs, blobs, len(blobFiles(t, tb.dir)))
	}
	// The registry loses a layer: the read names it as missing.
	if err := repo.Blobs().Delete(ctx, tb.layer); err != nil {
		t.Fatal(err)
	}
	_, err = medium.Read(ctx, regLoc(repo, "edge"), plainHTTP(repo))
	e, ok := bundle.AsError(err)
	if !ok || e.Check != bundle.CheckMissing || e.Blob != tb.layer.Digest {
		t.Fatalf("want the lost layer %s named as missing, got %v", tb.layer.Digest, err)
	}
	t.Logf("read %d blobs straight from the registry; a lost layer: %v", res.Blobs, err)
}
