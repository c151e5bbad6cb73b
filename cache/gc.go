package cache

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"

	"github.com/ferry-gitops/ferry/bundle"
)

// GCReport is what a garbage collection kept and removed.
type GCReport struct {
	Kept         []uint64 `json:"keptBundles"`
	Dropped      []uint64 `json:"droppedBundles"`
	Removed      int      `json:"removedBlobs"`
	RemovedBytes int64    `json:"removedBytes"`
}

// GC keeps the last keep accepted bundles (at least the current one) and every blob they
// reach, and removes the rest. Readers serving a blob are safe: they open blobs by digest, and a
// blob unlinked after it was opened stays readable until closed; a removed bundle is no longer
// served, so nobody opens its blobs anew.
func (c *Cache) GC(ctx context.Context, keep int) (*GCReport, error) {
	keep = max(keep, 1)
	recs, err := c.Records()
	if err != nil {
		return nil, err
	}
	rep := &GCReport{}
	live := map[digest.Digest]bool{}
	var mark bundle.Visitor = func(_ context.Context, e bundle.Entry, _ io.Reader) error {
		live[e.Descriptor.Digest] = true
		return nil
	}
	first := max(len(recs)-keep, 0)
	var dropped []Record
	for i, r := range recs {
		if i < first {
			rep.Dropped = append(rep.Dropped, r.Sequence)
			dropped = append(dropped, r)
			continue
		}
		rep.Kept = append(rep.Kept, r.Sequence)
		if _, err := c.ReadBundle(ctx, r, bundle.WithVisitor(mark)); err != nil {
			return nil, fmt.Errorf("gc: bundle %d is not whole (run 'sync fsck'): %w", r.Sequence, err)
		}
	}
	// Records go first: once a bundle is dropped, nothing serves it. Each dropped bundle is
	// remembered as accepted once, before its record goes (see AcceptedRoots).
	for _, r := range dropped {
		if err := c.noteCollected(r); err != nil {
			return nil, fmt.Errorf("gc: remember bundle %d: %w", r.Sequence, err)
		}
		step()
		if err := os.Remove(filepath.Join(c.dir, recordsDir, recordName(r.Sequence))); err != nil {
			return nil, err
		}
	}
	if err := syncDir(filepath.Join(c.dir, recordsDir)); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(filepath.Join(c.dir, blobsDir))
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		d := digest.Digest("sha256:" + e.Name())
		if live[d] {
			continue
		}
		if fi, err := e.Info(); err == nil {
			rep.RemovedBytes += fi.Size()
		}
		step()
		if err := os.Remove(filepath.Join(c.dir, blobsDir, e.Name())); err != nil {
			return nil, err
		}
		rep.Removed++
	}
	return rep, syncDir(filepath.Join(c.dir, blobsDir))
}
