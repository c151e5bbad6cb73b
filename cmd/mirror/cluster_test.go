package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/cache"
	"github.com/ferry-gitops/ferry/internal/testenv"
	"github.com/ferry-gitops/ferry/verify"
)

// execute runs one mirror command with args and returns what it printed.
func execute(t *testing.T, cmd *cobra.Command, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("mirror %s %s: %v\n%s", cmd.Name(), strings.Join(args, " "), err, errOut.String())
	}
	return out.String()
}

// `mirror pack` with a spec naming a Git source and a cluster folder writes a signed bundle
// with a cluster item; `mirror verify` accepts it in a directory and in a tar, `mirror inspect`
// shows the item, and a cache imports it.
func TestPackVerifyInspectClusterItem(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cosign, err := testenv.ToolPath("cosign")
	if err != nil {
		t.Fatal(err)
	}
	keygen := exec.Command(cosign, "generate-key-pair")
	keygen.Dir = dir
	keygen.Env = append(os.Environ(), "COSIGN_PASSWORD=ferry", "HOME="+dir)
	if out, err := keygen.CombinedOutput(); err != nil {
		t.Fatalf("cosign generate-key-pair: %v\n%s", err, out)
	}
	t.Setenv("COSIGN_PASSWORD", "ferry")

	git := testenv.NewGitServer(t)
	commit, err := git.CreateRepo(ctx, "platform", map[string]string{"apps/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: demo\n"})
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"ferry.yaml": "apiVersion: ferry.dev/v1alpha1\nkind: Mirror\ngit:\n  - name: platform\n    url: " + git.RepoURL("platform") +
			"\n    ref: {branch: main}\ncluster:\n  path: ./cluster\n",
		"cluster/namespace.yaml":     "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: apps\n",
		"cluster/kustomization.yaml": "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata:\n  name: platform\n  namespace: apps\nspec:\n  interval: 5m\n  path: apps\n  sourceRef: {kind: GitRepository, name: platform}\n",
		"cluster/gitrepository.yaml": "apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata:\n  name: platform\n  namespace: apps\nspec:\n  interval: 1m\n  url: " + git.RepoURL("platform") +
			"\n  ref: {branch: main}\n",
	}
	testenv.WriteFiles(t, dir, files)
	out := filepath.Join(dir, "bundle")
	tarPath := filepath.Join(dir, "bundle.tar")
	execute(t, packCommand(), "-f", filepath.Join(dir, "ferry.yaml"), "--key", filepath.Join(dir, "cosign.key"), "--out", out, "--tar", tarPath, "--sequence", "7")

	var revision string
	for _, src := range []string{out, tarPath} {
		var s summary
		raw := execute(t, verifyCommand(), src, "--key", filepath.Join(dir, "cosign.pub"), "--output", "json")
		if err := json.Unmarshal([]byte(raw), &s); err != nil {
			t.Fatalf("verify output: %v\n%s", err, raw)
		}
		if s.Verified == nil || !*s.Verified || s.Sequence != 7 || len(s.Items) != 2 {
			t.Fatalf("verify %s: %s", src, raw)
		}
		got := map[string]itemSummary{}
		for _, it := range s.Items {
			got[it.Name] = it
		}
		cl, git := got[bundle.ClusterItemName], got["platform"]
		if cl.Kind != string(bundle.KindCluster) || cl.Source != "./cluster" || !strings.HasPrefix(cl.Revision, "sha256:") {
			t.Fatalf("cluster item %+v", cl)
		}
		if git.Kind != string(bundle.KindGit) || git.Revision != commit {
			t.Fatalf("git item %+v, want commit %s", git, commit)
		}
		revision = cl.Revision
	}

	text := execute(t, inspectCommand(), out)
	var line string
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, "cluster ") {
			line = l
		}
	}
	if f := strings.Fields(line); len(f) != 5 || f[1] != "cluster" || !strings.HasPrefix(revision, strings.TrimSuffix(f[2], "…")) || f[3] != "./cluster" {
		t.Fatalf("inspect does not show the cluster item:\n%s", text)
	}

	key, err := verify.LoadPublicKey(filepath.Join(dir, "cosign.pub"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := cache.Open(filepath.Join(dir, "cache"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	f, err := os.Open(tarPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	imp, err := c.Import(ctx, func(opts ...bundle.ReadOption) (*bundle.Result, error) { return bundle.ReadTar(ctx, f, opts...) },
		verify.Policy{Keys: []verify.TrustedKey{{Key: key}}, Now: func() time.Time { return time.Now().Add(time.Minute) }})
	if err != nil {
		t.Fatalf("import: %v", err)
	}
	found := false
	for _, it := range imp.Record.Items {
		found = found || (it.Kind == bundle.KindCluster && it.Revision == revision)
	}
	if !found {
		t.Fatalf("the cache record lacks the cluster item: %+v", imp.Record.Items)
	}
}
