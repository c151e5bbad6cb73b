package bundle_test

import (
	"context"
	"errors"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/ferry-gitops/ferry/bundle"
)

// A delta carries only what its base lacks; a reader holding the base accepts it, and one that
// lacks any omitted blob rejects it by name.
func TestDeltaCarriesOnlyWhatTheBaseLacks(t *testing.T) {
	ctx := context.Background()
	base := newFixture(t, 1)
	full, err := bundle.ReadLayout(ctx, base.dir)
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	l, err := bundle.NewLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	next := *base.bundle
	next.Sequence, next.Previous, next.Base = 2, base.root.Digest, base.root.Digest
	newImage := pushImage(t, l, randomImage(t, 32<<10, 1))
	next.Items = append(append([]bundle.Item{}, base.bundle.Items...), bundle.Item{
		Name: "new", Kind: bundle.KindImage, Source: "registry.example/team/new:1", Revision: string(newImage.Digest), Descriptor: newImage,
	})
	baseHas := func(_ context.Context, d digest.Digest) (bool, error) {
		_, err := statBlob(base.dir, d)
		return err == nil, nil
	}
	if _, err := bundle.Write(ctx, l, &next, nil); err == nil {
		t.Fatal("a delta was written without its base being checked")
	}
	root, err := bundle.Write(ctx, l, &next, nil, bundle.WithHave(baseHas))
	if err != nil {
		t.Fatal(err)
	}
	res, err := bundle.ReadLayout(ctx, dir, bundle.WithHave(baseHas))
	if err != nil {
		t.Fatal(err)
	}
	if res.Root.Digest != root.Digest || res.Bundle.Base != base.root.Digest || res.FromBase == 0 || res.Blobs != 4 {
		t.Fatalf("delta read %d blobs and %d from the base (root %s, base %s)", res.Blobs, res.FromBase, res.Bundle.Base, res.Root.Digest)
	}
	t.Logf("delta: %d blobs carried (%d bytes), %d item roots left to the base of %d blobs", res.Blobs, res.Bytes, res.FromBase, full.Blobs)

	// A reader whose cache lacks one of the omitted blobs names it.
	lacking := func(_ context.Context, d digest.Digest) (bool, error) {
		if d == base.images["multi"] {
			return false, nil
		}
		return baseHas(ctx, d)
	}
	_, err = bundle.ReadLayout(ctx, dir, bundle.WithHave(lacking))
	if e, ok := bundle.AsError(err); !ok || e.Check != bundle.CheckMissing || e.Item != "multi" {
		t.Fatalf("want item multi missing, got %v", err)
	}
	// A failing lookup is an error, never an acceptance.
	broken := func(context.Context, digest.Digest) (bool, error) { return false, errors.New("cache unreadable") }
	if _, err := bundle.ReadLayout(ctx, dir, bundle.WithHave(broken)); err == nil {
		t.Fatal("accepted with a failing base lookup")
	}
}
