package discover

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/fetch"
	"github.com/ferry-gitops/ferry/kbuild"
)

// maxManifest bounds an index or manifest read whole from the store.
const maxManifest = 4 << 20

func readBlob(ctx context.Context, s fetch.Store, d ocispec.Descriptor, max int64) ([]byte, error) {
	if d.Size > max {
		return nil, fmt.Errorf("blob %s of %d bytes is over the %d byte limit", d.Digest, d.Size, max)
	}
	rc, err := s.Fetch(ctx, d)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(io.LimitReader(rc, max+1))
}

func readJSON(ctx context.Context, s fetch.Store, d ocispec.Descriptor, v any) error {
	b, err := readBlob(ctx, s, d, maxManifest)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// treeLayer returns the Flux content layer (a tar.gz of manifests) of a fetched item: a Git
// item's Flux artifact, or an OCI artifact whose manifest has one layer of that type.
func treeLayer(ctx context.Context, s fetch.Store, it bundle.Item) (ocispec.Descriptor, error) {
	switch it.Kind {
	case bundle.KindGit:
		var idx ocispec.Index
		if err := readJSON(ctx, s, it.Descriptor, &idx); err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("git item %s: root index: %w", it.Name, err)
		}
		_, flux := bundle.GitRoles(idx)
		if flux == nil {
			return ocispec.Descriptor{}, fmt.Errorf("git item %s: no Flux artifact", it.Name)
		}
		var m ocispec.Manifest
		if err := readJSON(ctx, s, *flux, &m); err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("git item %s: flux manifest: %w", it.Name, err)
		}
		return bundle.GitFluxLayer(m)
	default:
		var m ocispec.Manifest
		if err := readJSON(ctx, s, it.Descriptor, &m); err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("item %s: manifest: %w", it.Name, err)
		}
		for _, l := range m.Layers {
			if l.MediaType == bundle.GitFluxContentMediaType {
				return l, nil
			}
		}
		return ocispec.Descriptor{}, fmt.Errorf("item %s (%s) has no layer of type %s: it is not an artifact of manifests", it.Name, it.Source, bundle.GitFluxContentMediaType)
	}
}

// extractTree writes a fetched item's tree into fsys under root.
func extractTree(ctx context.Context, s fetch.Store, it bundle.Item, fsys filesys.FileSystem, root string) error {
	l, err := treeLayer(ctx, s, it)
	if err != nil {
		return err
	}
	rc, err := s.Fetch(ctx, l)
	if err != nil {
		return fmt.Errorf("item %s: tree: %w", it.Name, err)
	}
	defer rc.Close()
	if err := kbuild.ExtractTarGz(rc, fsys, root); err != nil {
		return fmt.Errorf("item %s: tree: %w", it.Name, err)
	}
	return nil
}

// chartArchive returns a fetched chart item's archive.
func chartArchive(ctx context.Context, s fetch.Store, it bundle.Item) ([]byte, error) {
	var m ocispec.Manifest
	if err := readJSON(ctx, s, it.Descriptor, &m); err != nil {
		return nil, fmt.Errorf("chart item %s: manifest: %w", it.Name, err)
	}
	l, err := bundle.ChartLayer(m)
	if err != nil {
		return nil, fmt.Errorf("chart item %s: %w", it.Name, err)
	}
	return readBlob(ctx, s, l, bundle.MaxChartSize)
}
