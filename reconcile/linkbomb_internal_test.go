package reconcile

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/internal/testbundle"
	"github.com/ferry-gitops/ferry/verify"
)

// A source tree of nested folder links (each level two links to the level below, 30 levels: a
// few kilobytes that a checkout expands to 2^30 copies of one file) is refused when the tree
// it expands to passes the archive's entry limit, with an error naming the link and the limit,
// in bounded time and memory, read from an imported cache as the reconciler reads a source.
func TestNestedLinkBombIsRefused(t *testing.T) {
	ctx := context.Background()
	s := testbundle.NewSigner(t)
	policy := verify.Policy{Keys: []verify.TrustedKey{s.Key("ops")}, Now: func() time.Time { return testbundle.Created.Add(time.Hour) }}
	f := testbundle.New(t, 1, "", nil)
	var tgz bytes.Buffer
	zw := gzip.NewWriter(&tgz)
	tw := tar.NewWriter(zw)
	body := bytes.Repeat([]byte("# padding\n"), 100)
	tw.WriteHeader(&tar.Header{Name: "d00/", Mode: 0o755, Typeflag: tar.TypeDir})
	tw.WriteHeader(&tar.Header{Name: "d00/cm.yaml", Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg})
	tw.Write(body)
	const levels = 30
	for i := 1; i <= levels; i++ {
		tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("d%02d/", i), Mode: 0o755, Typeflag: tar.TypeDir})
		for _, l := range []string{"a", "b"} {
			tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("d%02d/%s", i, l), Linkname: fmt.Sprintf("../d%02d", i-1), Typeflag: tar.TypeSymlink})
		}
	}
	tw.Close()
	zw.Close()
	treeManifest := testbundle.Artifact(t, f.Layout, "application/vnd.cncf.flux.config.v1+json", map[string][]byte{bundle.GitFluxContentMediaType: tgz.Bytes()}, nil)
	tree := ocispec.Descriptor{MediaType: bundle.GitFluxContentMediaType, Digest: digest.FromBytes(tgz.Bytes()), Size: int64(tgz.Len())}
	f.Bundle.Items = append(f.Bundle.Items,
		bundle.Item{Name: "bomb", Kind: bundle.KindArtifact, Source: "registry.example/bomb:1", Revision: string(treeManifest.Digest), Descriptor: treeManifest})
	f.Write(t, s.Sign)
	_, snap := f.Imported(t, policy)

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	fsys := filesys.MakeFsInMemory()
	err := (&source{flux: tree}).extract(ctx, snap, fsys, "/src")
	took := time.Since(start)
	runtime.ReadMemStats(&after)
	if err == nil {
		t.Fatalf("a tree of %d nested folder links was extracted", levels)
	}
	for _, want := range []string{"link d", fmt.Sprintf("more than %d entries", maxTreeEntries), "link files, not folders"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if took > 20*time.Second {
		t.Errorf("refusing the link bomb took %s", took)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<30 {
		t.Errorf("refusing the link bomb allocated %d MiB", alloc>>20)
	}
	if fsys.Exists("/src/d00/cm.yaml") {
		t.Error("a refused tree was written into the build's file system")
	}
	t.Logf("refused in %s: %v", took, err)
}
