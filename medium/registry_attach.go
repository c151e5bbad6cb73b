package medium

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/ferry-gitops/ferry/bundle"
)

// findAttachments returns the root's attachments in repo: its referrers (through the referrers
// API, or oras-go's fallback to the referrers tag) and the manifest tagged sha256-<root hex>.sig,
// which keeps that name. Each is a plain descriptor, whatever the registry added, sorted by digest.
func findAttachments(ctx context.Context, repo *remote.Repository, root ocispec.Descriptor) ([]ocispec.Descriptor, error) {
	found := map[digest.Digest]ocispec.Descriptor{}
	add := func(d ocispec.Descriptor, name string) {
		a := ocispec.Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size}
		if name == "" {
			name = found[d.Digest].Annotations[ocispec.AnnotationRefName]
		}
		if name != "" {
			a.Annotations = map[string]string{ocispec.AnnotationRefName: name}
		}
		found[d.Digest] = a
	}
	if err := repo.Referrers(ctx, root, "", func(refs []ocispec.Descriptor) error {
		for _, r := range refs {
			add(r, "")
		}
		if len(found) > bundle.DefaultMaxAttachments {
			return fmt.Errorf("more than %d referrers: a bundle's root has at most %d attachments", bundle.DefaultMaxAttachments, bundle.DefaultMaxAttachments)
		}
		return ctx.Err()
	}); err != nil {
		return nil, fmt.Errorf("referrers of root %s: %w", root.Digest, err)
	}
	tag := bundle.SignatureTag(root.Digest)
	switch d, err := repo.Resolve(ctx, tag); {
	case errors.Is(err, errdef.ErrNotFound):
	case err != nil:
		return nil, fmt.Errorf("resolve %s: %w", tag, err)
	default:
		add(d, tag)
	}
	out := make([]ocispec.Descriptor, 0, len(found))
	for _, a := range found {
		out = append(out, a)
	}
	slices.SortFunc(out, func(x, y ocispec.Descriptor) int { return strings.Compare(string(x.Digest), string(y.Digest)) })
	return out, nil
}
