package cache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"

	"github.com/ferry-gitops/ferry/bundle"
)

// Problem is one thing fsck found wrong.
type Problem struct {
	// What is a blob digest, a record name or the state file.
	What  string `json:"what"`
	Issue string `json:"issue"`
	// Quarantined is where a damaged blob was moved, when fsck was asked to.
	Quarantined string `json:"quarantined,omitempty"`
}

// FsckReport is what fsck checked and found.
type FsckReport struct {
	Blobs    int       `json:"blobs"`
	Bytes    int64     `json:"bytes"`
	Bundles  int       `json:"bundles"`
	Problems []Problem `json:"problems"`
}

// OK reports whether the cache is whole.
func (r *FsckReport) OK() bool { return len(r.Problems) == 0 }

// Fsck proves the cache whole: it re-hashes every blob, walks every accepted bundle's graph
// (every blob present, sized and hashed right), and checks the state names an accepted bundle.
// It also reports what no committed import leaves behind: a record newer than the state (an
// import that wrote its record but never committed), a blob no record reaches, and a staging
// folder. On a cache opened with Open, Fsck first runs the crash recovery Open runs, so these
// mean damage, not an import in progress. With quarantineBad, a blob whose bytes do
// not match its name is moved to quarantine/ (durably: both folders are synced).
func (c *Cache) Fsck(ctx context.Context, quarantineBad bool) (*FsckReport, error) {
	if c.lock != nil { // a writer: the same recovery as Open, Import and GC run
		if err := c.recover(); err != nil {
			return nil, fmt.Errorf("cache %s: recover an interrupted import: %w", c.dir, diskError(c.dir, err))
		}
	}
	rep := &FsckReport{}
	entries, err := os.ReadDir(filepath.Join(c.dir, blobsDir))
	if err != nil {
		return nil, err
	}
	present := map[digest.Digest]bool{}
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		d := digest.Digest("sha256:" + e.Name())
		if d.Validate() != nil {
			rep.Problems = append(rep.Problems, Problem{What: e.Name(), Issue: "not a blob name"})
			continue
		}
		got, n, err := hashFile(c.blobPath(d))
		if err != nil {
			rep.Problems = append(rep.Problems, Problem{What: string(d), Issue: err.Error()})
			continue
		}
		rep.Blobs++
		rep.Bytes += n
		if got != d {
			p := Problem{What: string(d), Issue: fmt.Sprintf("content hashes to %s", got)}
			if quarantineBad {
				dst := filepath.Join(c.dir, quarantine, e.Name())
				if err := renameDurable(c.blobPath(d), dst); err != nil {
					return nil, fmt.Errorf("quarantine %s: %w", d, diskError(c.dir, err))
				}
				p.Quarantined = dst
			} else {
				present[d] = true
			}
			rep.Problems = append(rep.Problems, p)
			continue
		}
		present[d] = true
	}
	recs, err := c.Records()
	if err != nil {
		return nil, err
	}
	st, err := c.State()
	if err != nil {
		return nil, err
	}
	reached := map[digest.Digest]bool{}
	var mark bundle.Visitor = func(_ context.Context, e bundle.Entry, _ io.Reader) error {
		reached[e.Descriptor.Digest] = true
		return nil
	}
	found := st.Root == ""
	for _, r := range recs {
		rep.Bundles++
		found = found || (r.Root == st.Root && r.Sequence == st.Sequence)
		if r.Sequence > st.Sequence {
			rep.Problems = append(rep.Problems, Problem{What: fmt.Sprintf("bundle %d", r.Sequence),
				Issue: fmt.Sprintf("orphan record: newer than the state (bundle %d), so never committed; remove %s and import the bundle again",
					st.Sequence, filepath.Join(c.dir, recordsDir, recordName(r.Sequence)))})
		}
		if _, err := c.ReadBundle(ctx, r, bundle.WithVisitor(mark)); err != nil {
			rep.Problems = append(rep.Problems, Problem{What: fmt.Sprintf("bundle %d", r.Sequence), Issue: err.Error()})
		}
	}
	if !found {
		rep.Problems = append(rep.Problems, Problem{What: stateFile, Issue: fmt.Sprintf("last accepted bundle %d (%s) has no record", st.Sequence, st.Root)})
	}
	for _, e := range entries {
		d := digest.Digest("sha256:" + e.Name())
		if present[d] && !reached[d] {
			rep.Problems = append(rep.Problems, Problem{What: string(d), Issue: "unreferenced blob: no bundle the cache holds reaches it ('sync gc' removes it)"})
		}
	}
	stages, err := os.ReadDir(filepath.Join(c.dir, stagingDir))
	if err != nil {
		return nil, err
	}
	for _, e := range stages {
		rep.Problems = append(rep.Problems, Problem{What: filepath.Join(stagingDir, e.Name()),
			Issue: fmt.Sprintf("leftover staging of an interrupted import: opening the cache for writing (sync import, sync run, sync fsck) finishes or undoes it; this one is still here after recovery, so remove %s by hand", filepath.Join(c.dir, stagingDir, e.Name()))})
	}
	return rep, nil
}
func hashFile(path string) (digest.Digest, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", n, err
	}
	return digest.Digest("sha256:" + hex.EncodeToString(h.Sum(nil))), n, nil
}
