package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/verify"
)

// ReadFunc reads a bundle from its medium with the options given (see medium.Read).
type ReadFunc func(opts ...bundle.ReadOption) (*bundle.Result, error)

// ImportResult describes an import.
type ImportResult struct {
	Record Record `json:"record"`
	// New counts the blobs the import added, NewBytes their sizes; the rest were held already.
	New      int   `json:"newBlobs"`
	NewBytes int64 `json:"newBytes"`
	Blobs    int   `json:"blobs"`
	// AlreadyAccepted is set when the bundle was the last one accepted: nothing changed.
	AlreadyAccepted bool `json:"alreadyAccepted"`
}

// journal is what a commit is about to do, written before it does it, so recovery can finish or
// undo it after a crash.
type journal struct {
	Root     digest.Digest   `json:"root"`
	Sequence uint64          `json:"sequence"`
	New      []digest.Digest `json:"new"`
	Record   string          `json:"record"`
}

// Import reads a bundle through read, verifying it against policy while copying every blob the
// cache lacks into staging, and commits it only if it is accepted whole. Nothing is visible
// until the commit, which is atomic; a rejection changes nothing and returns a
// *bundle.Error naming the item and the check (see verify.Run.Finish).
func (c *Cache) Import(ctx context.Context, read ReadFunc, policy verify.Policy) (*ImportResult, error) {
	st, err := c.State()
	if err != nil {
		return nil, err
	}
	stage := filepath.Join(c.dir, stagingDir, fmt.Sprintf("%d-%s", time.Now().UnixNano(), randomName()))
	step()
	if err := os.MkdirAll(filepath.Join(stage, "blobs"), 0o755); err != nil {
		return nil, err
	}
	defer os.RemoveAll(stage) // after a commit, only the emptied folder is left to remove
	var fresh []digest.Digest
	var freshBytes int64
	staged := map[digest.Digest]bool{}
	copyIn := func(ctx context.Context, e bundle.Entry, r io.Reader) error {
		if e.Path == bundle.LayoutFile || e.Path == bundle.IndexFile {
			return nil // kept in the record from the result
		}
		d := e.Descriptor.Digest
		if held, err := c.Has(ctx, d); err != nil {
			return err
		} else if held || staged[d] {
			_, err := io.Copy(io.Discard, r) // verified all the same, never stored twice
			return err
		}
		n, err := writeStream(filepath.Join(stage, "blobs", d.Encoded()), r)
		if err != nil {
			return fmt.Errorf("stage blob %s: %w", d, err)
		}
		staged[d] = true
		fresh = append(fresh, d)
		freshBytes += n
		return nil
	}
	run := policy.Begin(st.Sequence, st.Root, copyIn)
	res, err := read(run.Options(bundle.WithHave(c.Has))...)
	res, err = run.Finish(res, err)
	if errors.Is(err, verify.ErrAlreadyAccepted) {
		recs, rerr := c.Records()
		if rerr != nil {
			return nil, rerr
		}
		out := &ImportResult{AlreadyAccepted: true}
		for _, r := range recs {
			if r.Root == st.Root {
				out.Record = r
			}
		}
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	rec := newRecord(res)
	if err := c.commit(stage, fresh, rec, State{Sequence: rec.Sequence, Root: rec.Root}); err != nil {
		return nil, fmt.Errorf("commit bundle %d: %w", rec.Sequence, err)
	}
	return &ImportResult{Record: rec, New: len(fresh), NewBytes: freshBytes, Blobs: res.Blobs}, nil
}

func newRecord(res *bundle.Result) Record {
	b := res.Bundle
	r := Record{Sequence: b.Sequence, Root: res.Root.Digest, Created: b.Created, Expires: b.Expires, Accepted: time.Now().UTC().Truncate(time.Second),
		Previous: b.Previous, Base: b.Base, Index: json.RawMessage(res.Index)}
	for _, it := range b.Items {
		r.Items = append(r.Items, RecordItem{Name: it.Name, Kind: it.Kind, Source: it.Source, Revision: it.Revision, Root: it.Descriptor})
	}
	return r
}

// commit makes a verified, staged bundle visible: journal, blobs into place, record, and last
// the state, whose atomic rename is the commit point.
func (c *Cache) commit(stage string, fresh []digest.Digest, rec Record, st State) error {
	j := journal{Root: rec.Root, Sequence: rec.Sequence, New: fresh, Record: recordName(rec.Sequence)}
	jb, err := json.Marshal(j)
	if err != nil {
		return err
	}
	if err := syncDir(filepath.Join(stage, "blobs")); err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(stage, "journal.json"), jb); err != nil {
		return err
	}
	for _, d := range fresh {
		step()
		if err := os.Rename(filepath.Join(stage, "blobs", d.Encoded()), c.blobPath(d)); err != nil {
			return err
		}
	}
	if err := syncDir(filepath.Join(c.dir, blobsDir)); err != nil {
		return err
	}
	rb, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(c.dir, recordsDir, j.Record), rb); err != nil {
		return err
	}
	sb, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(c.dir, stateFile), sb); err != nil { // the commit point
		return err
	}
	step()
	if err := os.RemoveAll(stage); err != nil {
		return err
	}
	return syncDir(filepath.Join(c.dir, stagingDir))
}

// recover finishes or undoes what a crash interrupted: an import whose state was written is
// complete and only its staging folder goes; any other is undone (its new blobs and its record
// removed), leaving the cache as it was before it.
func (c *Cache) recover() error {
	st, err := c.State()
	if err != nil {
		return err
	}
	entries, err := os.ReadDir(filepath.Join(c.dir, stagingDir))
	if err != nil {
		return err
	}
	for _, e := range entries {
		stage := filepath.Join(c.dir, stagingDir, e.Name())
		if b, err := os.ReadFile(filepath.Join(stage, "journal.json")); err == nil {
			var j journal
			if err := json.Unmarshal(b, &j); err != nil {
				return fmt.Errorf("journal of %s: %w", e.Name(), err)
			}
			if j.Root != st.Root {
				for _, d := range j.New {
					step()
					if err := os.Remove(c.blobPath(d)); err != nil && !os.IsNotExist(err) {
						return err
					}
				}
				step()
				if err := os.Remove(filepath.Join(c.dir, recordsDir, j.Record)); err != nil && !os.IsNotExist(err) {
					return err
				}
				if err := syncDir(filepath.Join(c.dir, recordsDir)); err != nil {
					return err
				}
				if err := syncDir(filepath.Join(c.dir, blobsDir)); err != nil {
					return err
				}
			}
		}
		step()
		if err := os.RemoveAll(stage); err != nil {
			return err
		}
	}
	// Temporary files of an interrupted atomic write.
	for _, dir := range []string{c.dir, filepath.Join(c.dir, recordsDir)} {
		tmps, _ := filepath.Glob(filepath.Join(dir, ".tmp-*"))
		for _, t := range tmps {
			os.Remove(t)
		}
	}
	return syncDir(filepath.Join(c.dir, stagingDir))
}
