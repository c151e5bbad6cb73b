package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/cache"
	"github.com/ferry-gitops/ferry/kbuild"
)

// maxManifestSize bounds an index, manifest or config read whole.
const maxManifestSize = 4 << 20

// errSourceNotFound marks a source the cache's current bundle does not hold.
var errSourceNotFound = errors.New("source not found")

// source is a Git item of the current bundle.
type source struct {
	item   cache.RecordItem
	commit string
	flux   ocispec.Descriptor // the tar.gz layer of the tree
}

// recordItem finds the item named name, of kind kind, in the current bundle's record.
func recordItem(rec *cache.Record, name string, kind bundle.Kind) (*cache.RecordItem, error) {
	if rec == nil {
		return nil, fmt.Errorf("%w: the cache holds no bundle yet", errSourceNotFound)
	}
	for i := range rec.Items {
		if it := &rec.Items[i]; it.Name == name {
			if it.Kind != kind {
				return nil, fmt.Errorf("%w: item %q of bundle %d is of kind %s, not %s", errSourceNotFound, name, rec.Sequence, it.Kind, kind)
			}
			return it, nil
		}
	}
	return nil, fmt.Errorf("%w: bundle %d has no item %q", errSourceNotFound, rec.Sequence, name)
}

// findSource looks up a Git item by name in rec and reads its commit from the pack config.
func findSource(ctx context.Context, c *cache.Snapshot, rec *cache.Record, name string) (*source, error) {
	item, err := recordItem(rec, name, bundle.KindGit)
	if err != nil {
		return nil, err
	}
	var idx ocispec.Index
	if err := readJSON(ctx, c, item.Root, &idx); err != nil {
		return nil, fmt.Errorf("git item %q: root index: %w", name, err)
	}
	s := &source{item: *item, commit: item.Revision}
	pack, flux := bundle.GitRoles(idx)
	if flux == nil {
		return nil, fmt.Errorf("git item %q: root index has no manifest with %s=%s", name, bundle.GitRoleAnnotation, bundle.GitRoleFlux)
	}
	if pack != nil {
		var m ocispec.Manifest
		if err := readJSON(ctx, c, *pack, &m); err != nil {
			return nil, fmt.Errorf("git item %q: pack manifest: %w", name, err)
		}
		if m.Config.MediaType == bundle.GitConfigMediaType {
			var cfg bundle.GitConfig
			if err := readJSON(ctx, c, m.Config, &cfg); err != nil {
				return nil, fmt.Errorf("git item %q: pack config: %w", name, err)
			}
			if cfg.Commit != "" {
				s.commit = cfg.Commit
			}
		}
	}
	var fm ocispec.Manifest
	if err := readJSON(ctx, c, *flux, &fm); err != nil {
		return nil, fmt.Errorf("git item %q: flux manifest: %w", name, err)
	}
	if s.flux, err = bundle.GitFluxLayer(fm); err != nil {
		return nil, fmt.Errorf("git item %q: %w", name, err)
	}
	return s, nil
}

// readJSON reads a small blob whole, verified, and decodes it.
func readJSON(ctx context.Context, c *cache.Snapshot, desc ocispec.Descriptor, v any) error {
	b, err := c.ReadAll(ctx, desc, maxManifestSize)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// extract writes the source's tree into fsys under root, the layer verified as it streams. It
// refuses absolute names, ".." and links that leave the tree; a link inside the tree is replaced
// by a copy of its target, since the in-memory file system has no links.
func (s *source) extract(ctx context.Context, c *cache.Snapshot, fsys filesys.FileSystem, root string) error {
	rc, err := c.Fetch(ctx, s.flux)
	if err != nil {
		return err
	}
	defer rc.Close()
	if err := kbuild.ExtractTarGz(rc, fsys, root); err != nil {
		// Damage in the cache shows first as a bad archive: read on, and say it is the blob.
		if _, derr := io.Copy(io.Discard, rc); errors.Is(derr, cache.ErrDamaged) {
			return fmt.Errorf("layer: %w", derr)
		}
		return err
	}
	// Read what the tar reader left (padding): the end of the layer is where it is verified.
	if _, err := io.Copy(io.Discard, rc); err != nil {
		return fmt.Errorf("layer: %w", err)
	}
	return nil
}
