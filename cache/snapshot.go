package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"

	"github.com/ferry-gitops/ferry/bundle"
)

// Snapshot is a read-only view of the bundle that was current when it was taken: its state and
// record, and the cache's blobs, verified while they are read. It is what serve and reconcile
// are handed: whoever holds one reads one bundle from start to end, however many imports
// commit meanwhile. It is a content.ReadOnlyStorage (Fetch, Exists), so oras-go's functions
// over stores (content.Successors, oras.Copy) work on it. Guarantees: docs/design/cache-view.md.
type Snapshot struct {
	c     *Cache
	state State
	rec   *Record
}

var _ content.ReadOnlyStorage = (*Snapshot)(nil)

// Snapshot returns a view of the cache's current bundle (the one its state names). In a cache
// that holds no bundle yet, the view has no record and no blob belongs to it.
func (c *Cache) Snapshot() (*Snapshot, error) {
	st, err := c.State()
	if err != nil {
		return nil, err
	}
	rec, err := c.recordOf(st)
	if err != nil {
		return nil, err
	}
	return &Snapshot{c: c, state: st, rec: rec}, nil
}

// State returns the sequence and root of the snapshot's bundle (zero for an empty cache).
func (s *Snapshot) State() State { return s.state }

// Record returns the record of the snapshot's bundle, or nil when the cache held none.
func (s *Snapshot) Record() *Record { return s.rec }

// Root returns the descriptor of the snapshot's bundle root, as its index.json (kept in the
// record) names it. A snapshot of an empty cache has none: an error wrapping ErrNotFound.
func (s *Snapshot) Root() (ocispec.Descriptor, error) {
	if s.rec == nil {
		return ocispec.Descriptor{}, fmt.Errorf("bundle root: the cache holds no bundle: %w", ErrNotFound)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(s.rec.Index, &idx); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("bundle %d: record's index.json: %w", s.rec.Sequence, err)
	}
	for _, m := range idx.Manifests {
		if m.Digest == s.rec.Root && m.Annotations[ocispec.AnnotationRefName] == bundle.RootRef {
			return ocispec.Descriptor{MediaType: m.MediaType, Digest: m.Digest, Size: m.Size}, nil
		}
	}
	return ocispec.Descriptor{}, fmt.Errorf("bundle %d: record's index.json names no root %s (run 'sync fsck'): %w", s.rec.Sequence, s.rec.Root, ErrNotFound)
}

// Exists reports whether the cache holds the blob with the descriptor's size.
func (s *Snapshot) Exists(ctx context.Context, desc ocispec.Descriptor) (bool, error) {
	return s.c.Exists(ctx, desc)
}

// Fetch opens a blob for reading in order; the reader fails at the end, instead of returning
// the last bytes, unless the size and digest match the descriptor (see Blob).
func (s *Snapshot) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	b, err := s.Open(ctx, desc)
	if err != nil {
		return nil, err // not a nil *Blob in a non-nil interface
	}
	return b, nil
}

// Open opens a blob for reading in order (verified) or at random (for Range requests; not
// verified): see Blob. A blob missing from the cache is an error wrapping ErrNotFound; one of
// another size than desc's, an error wrapping ErrDamaged.
func (s *Snapshot) Open(ctx context.Context, desc ocispec.Descriptor) (*Blob, error) {
	b, err := s.c.openBlob(ctx, desc)
	if errors.Is(err, ErrNotFound) && s.rec != nil {
		if _, serr := os.Stat(filepath.Join(s.c.dir, recordsDir, recordName(s.rec.Sequence))); errors.Is(serr, fs.ErrNotExist) {
			return nil, fmt.Errorf("bundle %d was collected by gc after this view of it was taken: %w", s.rec.Sequence, err)
		}
	}
	return b, err
}

// ReadAll reads a blob whole, verified, refusing one whose descriptor says it is larger than
// limit (an error wrapping errdef.ErrSizeExceedsLimit) before reading anything. It is the one
// bounded read of cached content: manifests, configs, chart archives, cluster layers.
func (s *Snapshot) ReadAll(ctx context.Context, desc ocispec.Descriptor, limit int64) ([]byte, error) {
	return readAll(ctx, s.Open, desc, limit)
}
