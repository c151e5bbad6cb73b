package medium

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content/oci"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/ferry-gitops/ferry/bundle"
)

// pushRegistry copies the bundle in layoutDir, which res says a verified read found complete,
// and its attachments into repo, and tags its root tag, last: a tag present means the whole
// bundle is. What the registry holds already is skipped.
func pushRegistry(ctx context.Context, repo *remote.Repository, tag, layoutDir string, res *bundle.Result) (ocispec.Descriptor, error) {
	where := target(repo, tag)
	names, err := attachmentNames(res.Index)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("%s: %s: %w", where, layoutDir, err)
	}
	root, err := os.OpenRoot(layoutDir) // no name or link leads out of the layout
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("%s: %w", where, err)
	}
	defer root.Close()
	src, err := oci.NewFromFS(ctx, root.FS())
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("%s: open %s: %w", where, layoutDir, err)
	}
	for _, d := range append([]ocispec.Descriptor{res.Root}, res.Attachments...) {
		if err := oras.CopyGraph(ctx, src, repo, d, oras.DefaultCopyGraphOptions); err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("%s: push %s: %w", where, d.Digest, err)
		}
	}
	for _, a := range res.Attachments {
		if name := names[a.Digest]; name != "" {
			if err := repo.Tag(ctx, a, name); err != nil {
				return ocispec.Descriptor{}, fmt.Errorf("%s: tag attachment %s as %s: %w", where, a.Digest, name, err)
			}
		}
	}
	// The bundle's tag is the last write: a tag present means the whole bundle is.
	if err := repo.Tag(ctx, res.Root, tag); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("%s: tag root %s: %w", where, res.Root.Digest, err)
	}
	return res.Root, nil
}

// attachmentNames returns the org.opencontainers.image.ref.name of each attachment that has
// one: the entries of index.json before the root.
func attachmentNames(index []byte) (map[digest.Digest]string, error) {
	var idx ocispec.Index
	if err := json.Unmarshal(index, &idx); err != nil {
		return nil, fmt.Errorf("%s: %w", bundle.IndexFile, err)
	}
	names := map[digest.Digest]string{}
	for _, e := range idx.Manifests {
		name := e.Annotations[ocispec.AnnotationRefName]
		if name == bundle.RootRef {
			break
		}
		if name != "" {
			names[e.Digest] = name
		}
	}
	return names, nil
}
