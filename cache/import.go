package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
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
	// An earlier import of this process whose commit and recovery both failed is finished or
	// undone first: its blobs must not count as held for this one.
	if err := c.recover(); err != nil {
		return nil, fmt.Errorf("cache %s: finish an interrupted import first: %w", c.dir, diskError(c.dir, err))
	}
	st, err := c.State()
	if err != nil {
		return nil, err
	}
	stage := filepath.Join(c.dir, stagingDir, fmt.Sprintf("%d-%s", time.Now().UnixNano(), randomName()))
	if err := mkdirDurable(filepath.Join(stage, "blobs")); err != nil {
		os.RemoveAll(stage)
		return nil, fmt.Errorf("import: staging folder: %w", diskError(c.dir, err))
	}
	// Until commit writes the journal, nothing outside staging changed: removing the folder
	// undoes the import (and the next opening removes it if this does not).
	staging := true
	defer func() {
		if staging {
			os.RemoveAll(stage)
		}
	}()
	var fresh []digest.Digest
	var freshBytes int64
	var stageErr error // the disk failed: not the bundle's fault
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
			if isDiskError(err) {
				stageErr = fmt.Errorf("stage blob %s: %w", d, err)
			}
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
	if err != nil && stageErr != nil {
		return nil, fmt.Errorf("import: %w; nothing was imported", diskError(c.dir, stageErr))
	}
	if err != nil {
		return nil, err
	}
	// The agent's own anti-rollback: decided on the verified blobs (staged or held), before
	// anything becomes current.
	images, err := c.agentImages(stage, res, policy.Limits)
	if err != nil {
		if e, ok := bundle.AsError(err); ok {
			e.Sequence, e.Root = res.Bundle.Sequence, res.Root.Digest
			return nil, fmt.Errorf("bundle %d rejected: %w", res.Bundle.Sequence, err)
		}
		return nil, fmt.Errorf("bundle %d not imported: %w", res.Bundle.Sequence, err)
	}
	agentVersion, err := run.AgentVersions(images, st.AgentVersion)
	if err != nil {
		return nil, err
	}
	rec := newRecord(res)
	staging = false // from here the journal decides, as after a crash
	if cerr := c.commit(stage, fresh, rec, State{Sequence: rec.Sequence, Root: rec.Root, AgentVersion: agentVersion}); cerr != nil {
		err := diskError(c.dir, cerr)
		rerr := c.recoverStage(stage)
		// Committed or not is the state's to say (the staging folder may already be gone).
		now, serr := c.State()
		forward := serr == nil && now.Root == rec.Root
		switch {
		case rerr != nil:
			return nil, fmt.Errorf("commit bundle %d: %w; finishing it failed too: %v (the next 'sync import', 'sync run' or 'sync fsck --cache %s' completes or undoes it)",
				rec.Sequence, err, diskError(c.dir, rerr), c.dir)
		case forward:
			// The state was written: the bundle is the current one, and recovery has made it
			// durable and cleaned up after it.
			slog.Warn("bundle committed; a step after the commit point failed and was redone", "sequence", rec.Sequence, "cache", c.dir, "error", cerr)
		default:
			return nil, fmt.Errorf("commit bundle %d: %w; the import was undone and the cache is as it was", rec.Sequence, err)
		}
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
// the state, whose atomic rename is the commit point. On an error the caller hands the stage to
// recoverStage, as an opening does after a crash.
func (c *Cache) commit(stage string, fresh []digest.Digest, rec Record, st State) error {
	j := journal{Root: rec.Root, Sequence: rec.Sequence, New: fresh, Record: recordName(rec.Sequence)}
	jb, err := json.Marshal(j)
	if err != nil {
		return err
	}
	if err := syncDir(filepath.Join(stage, "blobs")); err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(stage, journalFile), jb); err != nil {
		return err
	}
	for _, d := range fresh {
		if err := step("rename", c.blobPath(d)); err != nil {
			return err
		}
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
	return c.cleanStage(stage)
}

// journalFile is the journal's name in a staging folder.
const journalFile = "journal.json"

// cleanStage removes a staging folder whose import is complete or undone.
func (c *Cache) cleanStage(stage string) error {
	if err := step("remove", stage); err != nil {
		return err
	}
	if err := os.RemoveAll(stage); err != nil {
		return err
	}
	return syncDir(filepath.Join(c.dir, stagingDir))
}

// recover finishes or undoes what a crash interrupted (see recoverStage), for every staging
// folder, and removes the temporary files of interrupted atomic writes.
func (c *Cache) recover() error {
	entries, err := os.ReadDir(filepath.Join(c.dir, stagingDir))
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := c.recoverStage(filepath.Join(c.dir, stagingDir, e.Name())); err != nil {
			return fmt.Errorf("staging/%s: %w", e.Name(), err)
		}
	}
	for _, dir := range []string{c.dir, filepath.Join(c.dir, recordsDir), filepath.Join(c.dir, collectedDir), filepath.Join(c.dir, rejectionsDir)} {
		tmps, _ := filepath.Glob(filepath.Join(dir, ".tmp-*"))
		for _, t := range tmps {
			os.Remove(t)
		}
	}
	return nil
}

// recoverStage finishes or undoes the import of one staging folder, after a crash (from
// recover) or a failed commit (from Import): the same code either way. An import whose journal
// names the root the state names committed: its state's folder is synced again and only the
// staging folder goes. Any other is undone: the blobs its journal lists as
// new and its record are removed, leaving the cache as it was before it. A folder without a
// journal never reached the commit and is removed.
func (c *Cache) recoverStage(stage string) error {
	st, err := c.State()
	if err != nil {
		return err
	}
	b, err := os.ReadFile(filepath.Join(stage, journalFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("read journal: %w", err) // never guess: its blobs may be in place
	default:
		var j journal
		if err := json.Unmarshal(b, &j); err != nil {
			return fmt.Errorf("journal %s: %w", filepath.Join(stage, journalFile), err)
		}
		if j.Root == st.Root {
			if err := syncDir(c.dir); err != nil { // the state's rename, if its sync failed
				return err
			}
			break
		}
		for _, d := range j.New {
			if err := step("remove", c.blobPath(d)); err != nil {
				return err
			}
			if err := os.Remove(c.blobPath(d)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
		rec := filepath.Join(c.dir, recordsDir, j.Record)
		if err := step("remove", rec); err != nil {
			return err
		}
		if err := os.Remove(rec); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if err := syncDir(filepath.Join(c.dir, recordsDir)); err != nil {
			return err
		}
		if err := syncDir(filepath.Join(c.dir, blobsDir)); err != nil {
			return err
		}
	}
	return c.cleanStage(stage)
}
