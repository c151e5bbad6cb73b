package medium

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/ferry-gitops/ferry/bundle"
)

// readRegistry reads the bundle tagged tag in repo straight from the registry, in stream order,
// verifying every blob as it arrives: no copy is made first, so each byte is read once. It finds
// the root's signatures the way pullRegistry does.
func readRegistry(ctx context.Context, repo *remote.Repository, tag string, opts ...bundle.ReadOption) (*bundle.Result, error) {
	where := target(repo, tag)
	if err := checkTag(repo, tag); err != nil {
		return nil, err
	}
	desc, err := repo.Resolve(ctx, tag)
	if err != nil {
		return nil, fmt.Errorf("%s: resolve: %w", where, err)
	}
	root, b, err := fetchRoot(ctx, repo, desc)
	if err != nil {
		return nil, fmt.Errorf("%s: root %s: %w", where, desc.Digest, err)
	}
	attachments, err := findAttachments(ctx, repo, root)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	index, err := bundle.LayoutIndex(root, b, attachments)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	res, err := bundle.ReadFiles(ctx, registryFiles{repo: repo, index: index}, opts...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	return res, nil
}

// registryFiles serves a bundle in a registry as layout files: oci-layout and index.json made
// here, blobs and manifests fetched by descriptor.
type registryFiles struct {
	repo  *remote.Repository
	index []byte
}

const ociLayout = `{"imageLayoutVersion":"1.0.0"}`

func (r registryFiles) Stat(name string) (int64, bool, error) {
	switch name {
	case bundle.LayoutFile:
		return int64(len(ociLayout)), true, nil
	case bundle.IndexFile:
		return int64(len(r.index)), true, nil
	}
	return 0, false, fs.ErrNotExist
}

func (r registryFiles) Open(name string) (io.ReadCloser, error) {
	switch name {
	case bundle.LayoutFile:
		return io.NopCloser(strings.NewReader(ociLayout)), nil
	case bundle.IndexFile:
		return io.NopCloser(strings.NewReader(string(r.index))), nil
	}
	return nil, fs.ErrNotExist
}

func (r registryFiles) OpenBlob(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	rc, err := r.repo.Fetch(ctx, desc)
	if errors.Is(err, errdef.ErrNotFound) {
		return nil, fmt.Errorf("%w: %w", fs.ErrNotExist, err)
	}
	return rc, err
}
