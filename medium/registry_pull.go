package medium

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/ferry-gitops/ferry/bundle"
)

// pullRegistry copies the bundle tagged tag in repo, with its attachments, into the new directory layoutDir and verifies it.
func pullRegistry(ctx context.Context, repo *remote.Repository, tag, layoutDir string, opts ...bundle.ReadOption) (*bundle.Result, error) {
	// The root is parsed before anything else is copied; index.json is written last and removed
	// again unless bundle.ReadLayout (given opts) finds the layout complete, so on error
	// layoutDir holds no index.json and is to be discarded.
	where := target(repo, tag)
	if err := checkTag(repo, tag); err != nil {
		return nil, err
	}
	if err := checkFresh(layoutDir); err != nil {
		return nil, fmt.Errorf("%s: pull into %s: %w", where, layoutDir, err)
	}
	desc, err := repo.Resolve(ctx, tag)
	if err != nil {
		return nil, fmt.Errorf("%s: resolve: %w", where, err)
	}
	root, b, err := fetchRoot(ctx, repo, desc)
	if err != nil {
		return nil, fmt.Errorf("%s: root %s: %w", where, desc.Digest, err)
	}
	l, err := bundle.NewLayout(layoutDir)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	if err := oras.CopyGraph(ctx, repo, l, root, oras.DefaultCopyGraphOptions); err != nil {
		return nil, fmt.Errorf("%s: pull %s: %w", where, root.Digest, err)
	}
	attachments, err := findAttachments(ctx, repo, root)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	if len(attachments) > bundle.DefaultMaxAttachments {
		return nil, fmt.Errorf("%s: root %s has %d attachments, at most %d", where, root.Digest, len(attachments), bundle.DefaultMaxAttachments)
	}
	for _, a := range attachments {
		if err := oras.CopyGraph(ctx, repo, l, a, oras.DefaultCopyGraphOptions); err != nil {
			return nil, fmt.Errorf("%s: pull attachment %s: %w", where, a.Digest, err)
		}
	}
	index, err := bundle.LayoutIndex(root, b, attachments)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	if err := l.WriteIndex(index); err != nil {
		return nil, fmt.Errorf("%s: %s: %w", where, bundle.IndexFile, err)
	}
	res, err := bundle.ReadLayout(ctx, layoutDir, opts...)
	if err != nil {
		// index.json marks a complete layout; this one is not.
		_ = os.Remove(filepath.Join(layoutDir, bundle.IndexFile))
		return nil, fmt.Errorf("%s: pulled bundle is not complete: %w", where, err)
	}
	return res, nil
}

// checkFresh reports an error unless dir is missing or an empty folder.
func checkFresh(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if len(entries) > 0 {
		return fmt.Errorf("not empty: pull into a new directory")
	}
	return nil
}

// fetchRoot reads and parses the root that desc resolved to, before anything else is copied,
// and returns its descriptor as the bundle describes it (with its artifactType).
func fetchRoot(ctx context.Context, repo *remote.Repository, desc ocispec.Descriptor) (ocispec.Descriptor, *bundle.Bundle, error) {
	if desc.MediaType != ocispec.MediaTypeImageIndex {
		return ocispec.Descriptor{}, nil, fmt.Errorf("media type %q: a Ferry bundle's root is an OCI image index", desc.MediaType)
	}
	if desc.Size > bundle.DefaultMaxManifestSize {
		return ocispec.Descriptor{}, nil, fmt.Errorf("%d bytes exceeds the manifest size limit %d", desc.Size, bundle.DefaultMaxManifestSize)
	}
	data, err := content.FetchAll(ctx, repo, desc) // checks size and digest
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	b, err := bundle.ParseRoot(data)
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	root, _, err := b.Descriptor()
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	if root.Digest != desc.Digest {
		return ocispec.Descriptor{}, nil, fmt.Errorf("re-encodes as %s", root.Digest)
	}
	return root, b, nil
}
