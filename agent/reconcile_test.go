package agent_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	kustomizev1 "github.com/fluxcd/kustomize-controller/api/v1"
	"github.com/fluxcd/pkg/apis/meta"
	sourcev1 "github.com/fluxcd/source-controller/api/v1"
	"github.com/opencontainers/go-digest"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferry-gitops/ferry/agent"
	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/fetch"
	"github.com/ferry-gitops/ferry/internal/testbundle"
	"github.com/ferry-gitops/ferry/internal/testenv"
	"github.com/ferry-gitops/ferry/reconcile"
	"github.com/ferry-gitops/ferry/spec"
)

// gitBundle packs the main branch of repo as Git item "platform" into a signed bundle in a new
// layout directory (the connected side's work, done here by the test).
func gitBundle(t *testing.T, h *harness, git *testenv.GitServer, repo string, seq uint64, previous digest.Digest) (string, digest.Digest) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	l, err := bundle.NewLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	item, err := fetch.Git(ctx, l, spec.Git{Name: "platform", URL: git.RepoURL(repo), Ref: spec.GitRef{Branch: "main"}}, &fetch.Options{})
	if err != nil {
		t.Fatal(err)
	}
	b := &bundle.Bundle{Sequence: seq, Created: testbundle.Created, Expires: testbundle.Created.Add(30 * 24 * time.Hour), Previous: previous, Items: []bundle.Item{item}}
	root, _, err := b.Descriptor()
	if err != nil {
		t.Fatal(err)
	}
	if root, err = bundle.Write(ctx, l, b, h.signer.Sign(t, l, root)); err != nil {
		t.Fatal(err)
	}
	return dir, root.Digest
}

// The cluster is reconciled from the cache's current bundle right after an import and every
// interval, with metrics for each reconciliation and for drift put back. A bundle that fails
// part-way (a blob damaged after others were staged) is rejected whole: the previous bundle
// stays current, and it is what the next reconciliations apply.
func TestReconcilesOnlyFromWholeBundles(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, "agent-reconcile")
	h.cfg.Intervals.Reconcile = agent.Duration{Duration: time.Second}
	git := testenv.NewGitServer(t)
	cm := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: greeting\n  namespace: " + h.ns + "\ndata:\n  hello: "
	commitA, err := git.CreateRepo(ctx, "platform", map[string]string{"app/cm.yaml": cm + "one\n"})
	if err != nil {
		t.Fatal(err)
	}
	s, err := reconcile.NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cluster.Config, client.Options{Scheme: s})
	if err != nil {
		t.Fatal(err)
	}
	// The Flux source the Kustomization names: the Git URL exactly as gitBundle packs it, which
	// the agent resolves to the carried Git item (it never dials the URL).
	g := &sourcev1.GitRepository{ObjectMeta: metav1.ObjectMeta{Name: "platform", Namespace: h.ns}, Spec: sourcev1.GitRepositorySpec{
		URL: git.RepoURL("platform"), Reference: &sourcev1.GitRepositoryRef{Branch: "main"}, Interval: metav1.Duration{Duration: time.Minute}}}
	if err := c.Create(ctx, g); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.DeleteAllOf(context.Background(), &sourcev1.GitRepository{}, client.InNamespace(h.ns)) })
	k := &kustomizev1.Kustomization{ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: h.ns}, Spec: kustomizev1.KustomizationSpec{
		SourceRef: kustomizev1.CrossNamespaceSourceReference{Kind: sourcev1.GitRepositoryKind, Name: "platform"}, Path: "app",
		Interval: metav1.Duration{Duration: time.Second}, Prune: true}}
	if err := c.Create(ctx, k); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.DeleteAllOf(context.Background(), &kustomizev1.Kustomization{}, client.InNamespace(h.ns)) })
	applied := func() (string, bool) {
		var got kustomizev1.Kustomization
		if err := c.Get(ctx, types.NamespacedName{Namespace: h.ns, Name: "app"}, &got); err != nil {
			t.Fatal(err)
		}
		return got.Status.LastAppliedRevision, apimeta.IsStatusConditionTrue(got.Status.Conditions, meta.ReadyCondition)
	}
	greeting := func() string {
		var got corev1.ConfigMap
		if err := c.Get(ctx, types.NamespacedName{Namespace: h.ns, Name: "greeting"}, &got); err != nil {
			return ""
		}
		return got.Data["hello"]
	}

	r := h.start(agent.Options{})
	dirA, rootA := gitBundle(t, h, git, "platform", 1, "")
	copyDir(t, dirA, filepath.Join(h.drop, "bundle-1"))
	waitFor(t, 30*time.Second, "bundle 1 applied", func() bool {
		rev, ready := applied()
		return rev == "main@sha1:"+commitA && ready && greeting() == "one"
	})
	ready := `ferry_reconcile_total{kind="Kustomization",result="ready"}`
	if r.value(ready) < 1 || r.value(`ferry_reconcile_duration_seconds_count{kind="Kustomization"}`) < 1 {
		t.Fatalf("reconciliations not counted: %s = %v", ready, r.value(ready))
	}

	// Bundle 2 (commit B), with its largest blob (a Git pack or tree) damaged: it verifies
	// up to that blob, then is rejected whole.
	commitB, err := git.Commit(ctx, "platform", map[string]string{"app/cm.yaml": cm + "two\n"}, "two")
	if err != nil {
		t.Fatal(err)
	}
	dirB, rootB := gitBundle(t, h, git, "platform", 2, rootA)
	damaged := filepath.Join(t.TempDir(), "bundle-2")
	copyDir(t, dirB, damaged)
	testbundle.Flip(t, largestBlob(t, damaged), 7)
	copyDir(t, damaged, filepath.Join(h.drop, "bundle-2-damaged"))
	waitFor(t, 15*time.Second, "the damaged bundle rejected", func() bool { return r.value(`ferry_bundles_rejected_total{check="digest"}`) == 1 })
	if st := h.state(); st.Sequence != 1 || st.Root != rootA {
		t.Fatalf("after a bundle failed part-way the current bundle is %+v, want bundle 1 (%s)", st, rootA)
	}
	if entries, err := os.ReadDir(filepath.Join(h.cache, "staging")); err != nil || len(entries) != 0 {
		t.Fatalf("staging after the rejection: %v (%v)", entries, err)
	}
	// The next reconciliations apply bundle 1, never a part of bundle 2.
	before := r.value(ready)
	waitFor(t, 15*time.Second, "two more reconciliations", func() bool { return r.value(ready) >= before+2 })
	if rev, ok := applied(); rev != "main@sha1:"+commitA || !ok || greeting() != "one" {
		t.Fatalf("after the rejection the cluster is at %s (ready %v, hello %q), want main@sha1:%s and one", rev, ok, greeting(), commitA)
	}

	// A hand edit is drift: put back by the next reconciliation, and counted.
	var live corev1.ConfigMap
	if err := c.Get(ctx, types.NamespacedName{Namespace: h.ns, Name: "greeting"}, &live); err != nil {
		t.Fatal(err)
	}
	patch := client.RawPatch(types.MergePatchType, []byte(`{"data":{"hello":"by hand"}}`))
	if err := c.Patch(ctx, &live, patch, client.FieldOwner("kubectl-edit")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "the hand edit put back", func() bool { return greeting() == "one" })
	waitFor(t, 5*time.Second, "the drift counted", func() bool { return r.value("ferry_drift_corrections_total") >= 1 })

	// The whole bundle 2 (same root, another copy) is accepted and applied at once.
	copyDir(t, dirB, filepath.Join(h.drop, "bundle-2"))
	waitFor(t, 30*time.Second, "bundle 2 applied", func() bool {
		rev, ready := applied()
		return rev == "main@sha1:"+commitB && ready && greeting() == "two"
	})
	if st := h.state(); st.Sequence != 2 || st.Root != rootB {
		t.Fatalf("current %+v, want bundle 2 (%s)", st, rootB)
	}
}

// largestBlob is the biggest blob file of a layout.
func largestBlob(t *testing.T, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, "blobs", "sha256"))
	if err != nil {
		t.Fatal(err)
	}
	var best string
	var size int64 = -1
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if info.Size() > size {
			best, size = filepath.Join(dir, "blobs", "sha256", e.Name()), info.Size()
		}
	}
	return best
}
