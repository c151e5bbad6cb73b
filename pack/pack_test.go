package pack_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/cache"
	"github.com/ferry-gitops/ferry/internal/testbundle"
	"github.com/ferry-gitops/ferry/internal/testenv"
	"github.com/ferry-gitops/ferry/pack"
	"github.com/ferry-gitops/ferry/spec"
	"github.com/ferry-gitops/ferry/verify"
)

// clusterSpec writes a spec whose only source is a cluster folder, and loads it.
func clusterSpec(t *testing.T) *spec.Spec {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"ferry.yaml":            "apiVersion: ferry.dev/v1alpha1\nkind: Mirror\ncluster:\n  path: ./cluster\n",
		"cluster/ns.yaml":       "# apps live here\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: apps\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: tools}\n",
		"cluster/apps/ks.yaml":  "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata:\n  name: platform\n  namespace: apps\nspec:\n  interval: 5m\n  sourceRef: {kind: GitRepository, name: platform}\n",
		"cluster/notes.txt":     "ignored\n",
		"cluster/apps/cm.yml":   "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: apps}\ndata: {count: \"1\"}\n",
		"cluster/empty.yaml":    "---\n# nothing\n",
		"cluster/z/nested.yaml": "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: deployer, namespace: tools}\n",
	}
	testenv.WriteFiles(t, dir, files)
	s, err := spec.Load(filepath.Join(dir, "ferry.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// wantLayer is the cluster layer of clusterSpec: files in path order, documents in file order,
// each re-encoded canonically after its "# Source:" line.
const wantLayer = `# Source: apps/cm.yml
apiVersion: v1
data:
  count: "1"
kind: ConfigMap
metadata:
  name: c
  namespace: apps
---
# Source: apps/ks.yaml
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: platform
  namespace: apps
spec:
  interval: 5m
  sourceRef:
    kind: GitRepository
    name: platform
---
# Source: ns.yaml
apiVersion: v1
kind: Namespace
metadata:
  name: apps
---
# Source: ns.yaml
apiVersion: v1
kind: Namespace
metadata:
  name: tools
---
# Source: z/nested.yaml
apiVersion: v1
kind: ServiceAccount
metadata:
  name: deployer
  namespace: tools
`

// A spec with cluster.path packs a cluster item: an OCI manifest with the cluster artifact
// type, the empty config and one layer of the documents. Two packs (different times and
// sequences) give the same item, byte for byte; the signed bundle verifies and a cache imports
// it.
func TestPackClusterItem(t *testing.T) {
	ctx := context.Background()
	s := clusterSpec(t)
	signer := testbundle.NewSigner(t)
	packAt := func(seq uint64, at time.Time) *pack.Result {
		t.Helper()
		res, err := pack.Pack(ctx, pack.Options{Spec: s, Dir: t.TempDir(), Sequence: seq, Signer: signer.SV, Now: func() time.Time { return at }})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	first := packAt(1, testbundle.Created)
	second := packAt(2, testbundle.Created.Add(time.Hour))

	if len(first.Bundle.Items) != 1 {
		t.Fatalf("items %+v, want the cluster item alone", first.Bundle.Items)
	}
	it := first.Bundle.Items[0]
	if it.Name != bundle.ClusterItemName || it.Kind != bundle.KindCluster || it.Source != "./cluster" {
		t.Fatalf("item %+v", it)
	}
	if it.Descriptor.MediaType != ocispec.MediaTypeImageManifest || it.Descriptor.ArtifactType != bundle.ClusterArtifactType {
		t.Fatalf("item descriptor %+v", it.Descriptor)
	}
	other := second.Bundle.Items[0]
	if other.Descriptor.Digest != it.Descriptor.Digest || other.Revision != it.Revision || other.Descriptor.Size != it.Descriptor.Size {
		t.Fatalf("two packs differ: %+v and %+v", it, other)
	}
	if first.Root.Digest == second.Root.Digest {
		t.Fatal("two roots of different sequences are equal")
	}

	var m ocispec.Manifest
	if err := json.Unmarshal(readBlob(t, first.Dir, string(it.Descriptor.Digest)), &m); err != nil {
		t.Fatal(err)
	}
	if m.ArtifactType != bundle.ClusterArtifactType || m.Config.MediaType != ocispec.MediaTypeEmptyJSON || m.Config.Digest != ocispec.DescriptorEmptyJSON.Digest {
		t.Fatalf("manifest %+v", m)
	}
	if len(m.Layers) != 1 || m.Layers[0].MediaType != bundle.ClusterManifestsMediaType || string(m.Layers[0].Digest) != it.Revision {
		t.Fatalf("layers %+v, revision %s", m.Layers, it.Revision)
	}
	if got := string(readBlob(t, first.Dir, it.Revision)); got != wantLayer {
		t.Fatalf("layer:\n%s\nwant:\n%s", got, wantLayer)
	}
	if string(readBlob(t, second.Dir, it.Revision)) != wantLayer {
		t.Fatal("the second pack's layer differs")
	}

	// The signed bundle verifies as `mirror verify` checks it, and a cache imports both packs in
	// sequence.
	policy := verify.Policy{Keys: []verify.TrustedKey{signer.Key("ops")}, AllowGaps: true, Now: func() time.Time { return testbundle.Created.Add(2 * time.Hour) }}
	c, err := cache.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, res := range []*pack.Result{first, second} {
		sigs := verify.NewCollector()
		read, err := bundle.ReadLayout(ctx, res.Dir, bundle.WithVisitor(sigs.Visit))
		if err != nil {
			t.Fatal(err)
		}
		if err := verify.RootSignature(ctx, sigs, read.Root, read.Attachments, []verify.Key{signer.Key("ops").Key}); err != nil {
			t.Fatalf("signature: %v", err)
		}
		dir := res.Dir
		imp, err := c.Import(ctx, func(opts ...bundle.ReadOption) (*bundle.Result, error) { return bundle.ReadLayout(ctx, dir, opts...) }, policy)
		if err != nil {
			t.Fatalf("import bundle %d: %v", res.Bundle.Sequence, err)
		}
		if len(imp.Record.Items) != 1 || imp.Record.Items[0].Kind != bundle.KindCluster || imp.Record.Items[0].Revision != it.Revision {
			t.Fatalf("record items %+v", imp.Record.Items)
		}
	}
	if ok, err := c.Has(ctx, m.Layers[0].Digest); err != nil || !ok {
		t.Fatalf("the cache lacks the layer: %v", err)
	}
}

// The folder is read again when packing: a file broken after the spec was loaded stops the pack
// with the file and document named, and leaves no index.json.
func TestPackClusterRechecks(t *testing.T) {
	s := clusterSpec(t)
	if err := os.WriteFile(filepath.Join(s.ClusterPath(), "ns.yaml"), []byte("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n---\nkind: Namespace\nmetadata:\n  name: b\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	_, err := pack.Pack(context.Background(), pack.Options{Spec: s, Dir: dir, Sequence: 1})
	if err == nil {
		t.Fatal("packed")
	}
	if want := "cluster/ns.yaml document 2: not a Kubernetes object: apiVersion required"; !strings.Contains(err.Error(), want) {
		t.Fatalf("error %v, want one saying %s", err, want)
	}
	if _, err := os.Stat(filepath.Join(dir, bundle.IndexFile)); err == nil {
		t.Fatal("a failed pack left an index.json")
	}
}

func readBlob(t *testing.T, dir, d string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "blobs", "sha256", d[len("sha256:"):]))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
