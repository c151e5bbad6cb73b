package agent_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferry-gitops/ferry/agent"
	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/cache"
	"github.com/ferry-gitops/ferry/internal/testbundle"
	"github.com/ferry-gitops/ferry/internal/testenv"
	"github.com/ferry-gitops/ferry/medium"
	"github.com/ferry-gitops/ferry/verify"
)

// The agent's cache disk fills up in the middle of a commit (a real tmpfs with no inode left
// for the state, once the journal and the record are written): the import fails naming the
// disk, is undone, and nothing is recorded as accepted or rejected. Once space is freed the
// agent imports the same bundle, and the next one after it: a failed commit cannot wedge it
// (a record without its state once made the agent skip the bundle as accepted and refuse the
// next on its chain).
func TestAgentRecoversFromAFullDiskDuringCommit(t *testing.T) {
	h := newHarness(t, "agent-disk-full")
	disk := filepath.Join(t.TempDir(), "disk")
	testenv.MountTmpfs(t, disk, "size=32m,nr_inodes=2000")
	h.cfg.Cache = filepath.Join(disk, "cache")
	h.cache = h.cfg.Cache
	b1 := h.bundle(1, "")
	b2 := h.bundle(2, b1.Root.Digest)
	b3 := h.bundle(3, b2.Root.Digest)

	// How many blobs bundle 2 adds to a cache holding bundle 1.
	probe, err := cache.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	policy := verify.Policy{Keys: []verify.TrustedKey{h.signer.Key("ops")}, Now: func() time.Time { return testbundle.Created.Add(time.Hour) }}
	var res *cache.ImportResult
	for _, f := range []*testbundle.Fixture{b1, b2} {
		if res, err = probe.Import(context.Background(), func(opts ...bundle.ReadOption) (*bundle.Result, error) {
			return medium.Read(context.Background(), medium.Layout(f.Dir), medium.WithReadOptions(opts...))
		}, policy); err != nil {
			t.Fatal(err)
		}
	}
	probe.Close()

	r := h.start(agent.Options{})
	dropTar(t, h.drop, "b1.tar", b1)
	waitFor(t, 15*time.Second, "bundle 1 accepted", func() bool { return h.state().Sequence == 1 })

	// Leave the inodes staging bundle 2 takes (its staging folder, its blobs folder, a file per
	// new blob), its journal and its record: none for the state.
	freeDisk := testenv.FillInodes(t, disk, 2+res.New+2)
	dropTar(t, h.drop, "b2.tar", b2)
	waitFor(t, 15*time.Second, "the import of bundle 2 failing on the full disk", func() bool {
		return strings.Contains(r.logs.String(), "is full") && strings.Contains(r.logs.String(), "no space left on device")
	})
	// It failed in the commit (the journal and the record written), and was undone.
	if logs := r.logs.String(); !strings.Contains(logs, "commit bundle 2") || !strings.Contains(logs, "the import was undone") {
		t.Fatalf("the import did not fail in its commit and get undone:\n%s", logs)
	}
	time.Sleep(500 * time.Millisecond) // a few retries, all failing
	if st := h.state(); st.Sequence != 1 {
		t.Fatalf("state %+v while the disk is full, want bundle 1", st)
	}
	for _, rj := range h.rejections() {
		if rj.Check != agent.CheckStuck {
			t.Fatalf("a full disk was recorded as a rejection of the bundle: %+v", rj)
		}
	}

	freeDisk()
	waitFor(t, 30*time.Second, "bundle 2 accepted once space is freed", func() bool { return h.state().Sequence == 2 })
	if h.state().Root != b2.Root.Digest {
		t.Fatalf("current %+v, want bundle 2", h.state())
	}
	dropTar(t, h.drop, "b3.tar", b3)
	waitFor(t, 15*time.Second, "bundle 3 accepted after it", func() bool { return h.state().Sequence == 3 })
	c, err := cache.OpenReader(h.cache)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if rep, err := c.Fsck(context.Background(), false); err != nil || !rep.OK() {
		t.Fatalf("fsck after recovery: %+v %v", rep, err)
	}
}
