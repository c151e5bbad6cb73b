package cache_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/ferry-gitops/ferry/cache"
	"github.com/ferry-gitops/ferry/internal/testbundle"
)

// traceSteps records every durable step the cache takes while f runs, as "op path".
func traceSteps(t *testing.T, f func()) []string {
	t.Helper()
	var got []string
	stop := cache.TraceSteps(func(op, path string) error { got = append(got, op+" "+path); return nil })
	defer stop()
	f()
	return got
}

// syncedAfter reports whether steps has "sync dir" after the first step that is want.
func syncedAfter(steps []string, want, dir string) bool {
	i := slices.Index(steps, want)
	return i >= 0 && slices.Contains(steps[i+1:], "sync "+dir)
}

// Every folder cache.Open creates is made durable: its parent is synced after the mkdir, so a
// power cut cannot leave a cache whose state or blobs sit in a folder the disk forgot.
func TestOpenSyncsTheParentOfEveryFolderItCreates(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "var", "cache")
	steps := traceSteps(t, func() { open(t, dir).Close() })
	folders := []string{filepath.Dir(dir), dir, filepath.Join(dir, "blobs"), filepath.Join(dir, "blobs", "sha256"),
		filepath.Join(dir, "refs"), filepath.Join(dir, "refs", "bundles"), filepath.Join(dir, "staging"), filepath.Join(dir, "quarantine")}
	for _, f := range folders {
		if !syncedAfter(steps, "mkdir "+f, filepath.Dir(f)) {
			t.Errorf("cache.Open created %s without syncing %s after it; steps:\n%s", f, filepath.Dir(f), strings.Join(steps, "\n"))
		}
	}
	// Opening it again creates nothing, and costs no durable step.
	if again := traceSteps(t, func() { open(t, dir) }); len(again) != 0 {
		t.Errorf("reopening an existing cache took durable steps: %v", again)
	}
}

// An import's staging folder is durable before its journal is written (or a power cut could
// keep the blobs renamed into place and lose the journal that undoes them), and fsck's
// quarantine move syncs both folders.
func TestImportAndQuarantineSyncTheirFolders(t *testing.T) {
	ctx := context.Background()
	sign, policy := keyPair(t)
	dir := t.TempDir()
	c := open(t, dir)
	b1 := testbundle.New(t, 1, "", sign)
	steps := traceSteps(t, func() {
		if _, err := c.Import(ctx, fromDir(b1.Dir), policy); err != nil {
			t.Fatal(err)
		}
	})
	var stage string
	for _, s := range steps {
		if p, ok := strings.CutPrefix(s, "mkdir "); ok && filepath.Dir(p) == filepath.Join(dir, "staging") {
			stage = p
		}
	}
	if stage == "" || !syncedAfter(steps, "mkdir "+stage, filepath.Join(dir, "staging")) {
		t.Fatalf("the import's staging folder was not synced into staging/ after its mkdir; steps:\n%s", strings.Join(steps, "\n"))
	}
	journal := slices.Index(steps, "rename "+filepath.Join(stage, "journal.json"))
	if journal < 0 || journal < slices.Index(steps, "sync "+filepath.Join(dir, "staging")) {
		t.Fatalf("the journal was written before its staging folder was durable; steps:\n%s", strings.Join(steps, "\n"))
	}

	// Damage one blob; fsck --quarantine moves it and syncs both folders.
	victim := b1.Layer.Digest
	testbundle.Flip(t, filepath.Join(dir, "blobs", "sha256", victim.Encoded()), 3)
	var rep *cache.FsckReport
	steps = traceSteps(t, func() {
		var err error
		if rep, err = c.Fsck(ctx, true); err != nil {
			t.Fatal(err)
		}
	})
	dst := filepath.Join(dir, "quarantine", victim.Encoded())
	if _, err := os.Stat(dst); err != nil {
		t.Fatalf("the damaged blob was not quarantined: %v (%+v)", err, rep)
	}
	for _, d := range []string{filepath.Join(dir, "quarantine"), filepath.Join(dir, "blobs", "sha256")} {
		if !syncedAfter(steps, "rename "+dst, d) {
			t.Errorf("fsck's quarantine rename did not sync %s; steps:\n%s", d, strings.Join(steps, "\n"))
		}
	}
}

// A record newer than the state (written by an import that never committed, as an older sync
// left after a failed commit) is not an accepted bundle: gc --keep 1 keeps the bundle the state
// names, AcceptedRoots leaves the orphan out, and fsck names it.
func TestOrphanRecordNeitherWinsGCNorCountsAsAccepted(t *testing.T) {
	ctx := context.Background()
	sign, policy := keyPair(t)
	dir := t.TempDir()
	c := open(t, dir)
	b1 := testbundle.New(t, 1, "", sign)
	b2 := testbundle.New(t, 2, b1.Root.Digest, sign)
	for _, b := range []*testbundle.Fixture{b1, b2} {
		if _, err := c.Import(ctx, fromDir(b.Dir), policy); err != nil {
			t.Fatal(err)
		}
	}
	// The orphan: bundle 3's record, as commit wrote it before the state, with no state.
	b3 := testbundle.New(t, 3, b2.Root.Digest, sign)
	cur, err := c.Current()
	if err != nil {
		t.Fatal(err)
	}
	orphan := *cur
	orphan.Sequence, orphan.Root, orphan.Previous = 3, b3.Root.Digest, b2.Root.Digest
	raw, _ := json.Marshal(orphan)
	if err := os.WriteFile(filepath.Join(dir, "refs", "bundles", fmt.Sprintf("%020d.json", 3)), raw, 0o644); err != nil {
		t.Fatal(err)
	}

	roots, err := c.AcceptedRoots()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := roots[b3.Root.Digest]; ok {
		t.Error("AcceptedRoots counts a record newer than the state as accepted: the agent would skip that bundle forever")
	}
	rep, err := c.Fsck(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if !hasProblem(rep, "bundle 3", "orphan record") {
		t.Errorf("fsck did not report the orphan record: %+v", rep.Problems)
	}

	gc, err := c.GC(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(gc.Kept, []uint64{2}) || !slices.Equal(gc.Dropped, []uint64{1}) {
		t.Fatalf("gc --keep 1 kept %v and dropped %v; want the current bundle 2 kept, 1 dropped", gc.Kept, gc.Dropped)
	}
	if cur, err := c.Current(); err != nil || cur.Sequence != 2 {
		t.Fatalf("after gc the current bundle is %+v, %v", cur, err)
	}
	if _, err := c.ReadBundle(ctx, *cur); err != nil {
		t.Fatalf("after gc the current bundle is not whole: %v", err)
	}
}

// fsck names a blob no bundle reaches and a staging folder recovery did not remove.
func TestFsckReportsUnreferencedBlobsAndLeftoverStaging(t *testing.T) {
	ctx := context.Background()
	sign, policy := keyPair(t)
	dir := t.TempDir()
	c := open(t, dir)
	b1 := testbundle.New(t, 1, "", sign)
	if _, err := c.Import(ctx, fromDir(b1.Dir), policy); err != nil {
		t.Fatal(err)
	}
	if rep, err := c.Fsck(ctx, false); err != nil || !rep.OK() {
		t.Fatalf("fsck of a whole cache: %+v %v", rep, err)
	}
	stray := []byte("a blob no record names")
	d := digest.FromBytes(stray)
	if err := os.WriteFile(filepath.Join(dir, "blobs", "sha256", d.Encoded()), stray, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "staging", "left", "blobs"), 0o755); err != nil {
		t.Fatal(err)
	}
	// Read without the lock (no recovery), fsck names both.
	r, err := cache.OpenReader(dir)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := r.Fsck(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if !hasProblem(rep, string(d), "unreferenced blob") {
		t.Errorf("fsck did not report the unreferenced blob: %+v", rep.Problems)
	}
	if !hasProblem(rep, filepath.Join("staging", "left"), "leftover staging") {
		t.Errorf("fsck did not report the leftover staging folder: %+v", rep.Problems)
	}
	// The writer's fsck runs the recovery a writer's opening runs: the staging folder (no
	// journal) goes; the unreferenced blob is still named.
	rep, err = c.Fsck(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if hasProblem(rep, filepath.Join("staging", "left"), "") || !hasProblem(rep, string(d), "unreferenced blob") {
		t.Errorf("the writer's fsck: %+v", rep.Problems)
	}
	if _, err := os.Stat(filepath.Join(dir, "staging", "left")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the writer's fsck did not recover the staging folder: %v", err)
	}
}

func hasProblem(rep *cache.FsckReport, what, issue string) bool {
	for _, p := range rep.Problems {
		if p.What == what && strings.Contains(p.Issue, issue) {
			return true
		}
	}
	return false
}

// ENOSPC at every durable step of an import, in process: the failed import's error names the
// disk, the cache is byte for byte as before (or, for a fault after the commit point, as after,
// and the import succeeds), fsck is whole, the failed bundle is not counted as accepted, and the
// next import succeeds. The e2e test does the same through the CLI with FERRY_CACHE_FAIL_AT.
func TestImportFailingAtEveryStepIsUndone(t *testing.T) {
	ctx := context.Background()
	sign, policy := keyPair(t)
	b1 := testbundle.New(t, 1, "", sign)
	b2 := testbundle.New(t, 2, b1.Root.Digest, sign)
	base := t.TempDir()
	c := open(t, base)
	if _, err := c.Import(ctx, fromDir(b1.Dir), policy); err != nil {
		t.Fatal(err)
	}
	c.Close()
	failed, forward := 0, 0
	for n := 1; ; n++ {
		dir := t.TempDir()
		copyTree(t, base, dir)
		c := open(t, dir)
		before := snapshot(t, dir)
		i := 0
		stop := cache.TraceSteps(func(op, path string) error {
			if i++; i == n {
				return &os.PathError{Op: op, Path: path, Err: syscall.ENOSPC}
			}
			return nil
		})
		_, err := c.Import(ctx, fromDir(b2.Dir), policy)
		stop()
		if i < n {
			if err != nil {
				t.Fatal(err)
			}
			break // every step was tried
		}
		if err != nil {
			failed++
			if !strings.Contains(err.Error(), "the disk holding the cache "+dir+" is full") || !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("step %d: the error does not name the full disk: %v", n, err)
			}
			if got := snapshot(t, dir); got != before {
				t.Fatalf("step %d: the failed import changed the cache (%v):\n%s\nwas:\n%s", n, err, got, before)
			}
			roots, rerr := c.AcceptedRoots()
			if rerr != nil {
				t.Fatal(rerr)
			}
			if _, ok := roots[b2.Root.Digest]; ok {
				t.Fatalf("step %d: the failed bundle counts as accepted", n)
			}
		} else {
			forward++
			if cur, _ := c.Current(); cur == nil || cur.Root != b2.Root.Digest {
				t.Fatalf("step %d: the import succeeded but bundle 2 is not current", n)
			}
		}
		if rep, err := c.Fsck(ctx, false); err != nil || !rep.OK() {
			t.Fatalf("step %d: fsck after the failed import: %+v %v", n, rep, err)
		}
		res, err := c.Import(ctx, fromDir(b2.Dir), policy)
		if err != nil || res.Record.Sequence != 2 {
			t.Fatalf("step %d: the next import: %+v %v", n, res, err)
		}
	}
	t.Logf("ENOSPC at each of %d steps: %d imports failed and were undone, %d faults after the commit point redone", failed+forward, failed, forward)
	if failed < 10 || forward == 0 {
		t.Fatalf("%d failed, %d redone: the steps did not cover the commit", failed, forward)
	}
}

func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	if out, err := exec.Command("cp", "-a", src+"/.", dst).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
}

// A commit that fails, and whose undoing fails too (the disk keeps failing), is finished or
// undone by the next import in the same process before it reads anything: its blobs, already
// renamed into place, never count as held for the next bundle.
func TestNextImportFinishesACommitWhoseRecoveryFailed(t *testing.T) {
	ctx := context.Background()
	sign, policy := keyPair(t)
	dir := t.TempDir()
	c := open(t, dir)
	b1 := testbundle.New(t, 1, "", sign)
	b2 := testbundle.New(t, 2, b1.Root.Digest, sign)
	if _, err := c.Import(ctx, fromDir(b1.Dir), policy); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, dir)
	// From the second blob renamed into place on, every step fails with EIO.
	renames := 0
	stop := cache.TraceSteps(func(op, path string) error {
		if op == "rename" && filepath.Dir(path) == filepath.Join(dir, "blobs", "sha256") {
			renames++
		}
		if renames >= 2 {
			return &os.PathError{Op: op, Path: path, Err: syscall.EIO}
		}
		return nil
	})
	_, err := c.Import(ctx, fromDir(b2.Dir), policy)
	stop()
	if err == nil || !strings.Contains(err.Error(), "finishing it failed too") || !strings.Contains(err.Error(), "the disk holding the cache "+dir+" failed") {
		t.Fatalf("want a commit error whose recovery failed too, naming the disk; got %v", err)
	}
	if snapshot(t, dir) == before {
		t.Fatal("the failed recovery left the cache as before: the test proves nothing")
	}
	res, err := c.Import(ctx, fromDir(b2.Dir), policy)
	if err != nil || res.Record.Sequence != 2 {
		t.Fatalf("the next import: %+v %v", res, err)
	}
	if rep, err := c.Fsck(ctx, false); err != nil || !rep.OK() {
		t.Fatalf("fsck after the next import: %+v %v", rep, err)
	}
}
