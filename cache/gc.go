package cache

import (
	"context"
	"fmt"
	"io"
	"log/slog"
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
	if err := c.recover(); err != nil { // an import left half done must not lose its blobs to gc
		return nil, fmt.Errorf("gc: finish an interrupted import first: %w", diskError(c.dir, err))
	}
	recs, err := c.Records()
	if err != nil {
		return nil, err
	}
	st, err := c.State()
	if err != nil {
		return nil, err
	}
	if _, err := c.recordOf(st); err != nil {
		return nil, fmt.Errorf("gc: %w", err) // never guess which bundle is current
	}
	rep := &GCReport{}
	live := map[digest.Digest]bool{}
	var mark bundle.Visitor = func(_ context.Context, e bundle.Entry, _ io.Reader) error {
		live[e.Descriptor.Digest] = true
		return nil
	}
	// The current bundle (the one the state names) and the keep-1 accepted before it stay. A
	// record newer than the state was never accepted (an import an older sync left half done):
	// gc neither drops it as if it had been accepted nor counts it; its blobs stay and fsck
	// reports it.
	var accepted, orphans []Record
	for _, r := range recs {
		if r.Sequence > st.Sequence {
			orphans = append(orphans, r)
		} else {
			accepted = append(accepted, r)
		}
	}
	first := max(len(accepted)-keep, 0)
	var dropped []Record
	for i, r := range accepted {
		if i < first && r.Root != st.Root {
			rep.Dropped = append(rep.Dropped, r.Sequence)
			dropped = append(dropped, r)
			continue
		}
		rep.Kept = append(rep.Kept, r.Sequence)
		if _, err := c.ReadBundle(ctx, r, bundle.WithVisitor(mark)); err != nil {
			return nil, fmt.Errorf("gc: bundle %d is not whole (run 'sync fsck'): %w", r.Sequence, err)
		}
	}
	for _, r := range orphans {
		if _, err := c.ReadBundle(ctx, r, bundle.WithVisitor(mark)); err != nil {
			slog.Warn("gc: a record newer than the state is not whole; its blobs that are present are kept", "sequence", r.Sequence, "error", err)
		}
	}
	// Records go first: once a bundle is dropped, nothing serves it. Each dropped bundle is
	// remembered as accepted once, before its record goes (see AcceptedRoots).
	for _, r := range dropped {
		if err := c.noteCollected(r); err != nil {
			return nil, fmt.Errorf("gc: remember bundle %d: %w", r.Sequence, diskError(c.dir, err))
		}
		p := filepath.Join(c.dir, recordsDir, recordName(r.Sequence))
		if err := step("remove", p); err != nil {
			return nil, fmt.Errorf("gc: drop bundle %d: %w", r.Sequence, diskError(c.dir, err))
		}
		if err := os.Remove(p); err != nil {
			return nil, fmt.Errorf("gc: drop bundle %d: %w", r.Sequence, diskError(c.dir, err))
		}
	}
	if err := syncDir(filepath.Join(c.dir, recordsDir)); err != nil {
		return nil, fmt.Errorf("gc: %w", diskError(c.dir, err))
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
		p := filepath.Join(c.dir, blobsDir, e.Name())
		if err := step("remove", p); err != nil {
			return nil, fmt.Errorf("gc: %w", diskError(c.dir, err))
		}
		if err := os.Remove(p); err != nil {
			return nil, fmt.Errorf("gc: %w", diskError(c.dir, err))
		}
		rep.Removed++
	}
	if err := syncDir(filepath.Join(c.dir, blobsDir)); err != nil {
		return nil, fmt.Errorf("gc: %w", diskError(c.dir, err))
	}
	return rep, nil
}
