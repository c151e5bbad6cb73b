package reconcile

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/cache"
	"github.com/ferry-gitops/ferry/internal/testbundle"
	"github.com/ferry-gitops/ferry/verify"
)

// Every read of the reconciler from the cache is verified: a blob whose bytes changed on disk
// is an error wrapping cache.ErrDamaged, from the manifest reads, the cluster layer, a chart
// archive and a source tree alike.
func TestReadsFromTheCacheAreVerified(t *testing.T) {
	ctx := context.Background()
	s := testbundle.NewSigner(t)
	policy := verify.Policy{Keys: []verify.TrustedKey{s.Key("ops")}, Now: func() time.Time { return testbundle.Created.Add(time.Hour) }}
	f := testbundle.New(t, 1, "", nil)
	cluster := testbundle.ClusterItemOfLayer(t, f.Layout, []byte("# Source: a.yaml\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  namespace: ns\n"))
	var tgz bytes.Buffer
	zw := gzip.NewWriter(&tgz)
	tw := tar.NewWriter(zw)
	body := bytes.Repeat([]byte("kind: Kustomization\n"), 200)
	tw.WriteHeader(&tar.Header{Name: "kustomization.yaml", Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg})
	tw.Write(body)
	tw.Close()
	zw.Close()
	treeManifest := testbundle.Artifact(t, f.Layout, "application/vnd.cncf.flux.config.v1+json", map[string][]byte{bundle.GitFluxContentMediaType: tgz.Bytes()}, nil)
	tree := ocispec.Descriptor{MediaType: bundle.GitFluxContentMediaType, Digest: digest.FromBytes(tgz.Bytes()), Size: int64(tgz.Len())}
	f.Bundle.Items = append(f.Bundle.Items, cluster,
		bundle.Item{Name: "tree", Kind: bundle.KindArtifact, Source: "registry.example/tree:1", Revision: string(treeManifest.Digest), Descriptor: treeManifest})
	f.Write(t, s.Sign)

	reads := []struct {
		name string
		blob ocispec.Descriptor
		read func(snap *cache.Snapshot) error
		// intact is whether the read succeeds on the intact blob (the chart archive is no chart).
		intact bool
	}{
		{"manifest", f.Manifest, func(snap *cache.Snapshot) error {
			var m ocispec.Manifest
			return readJSON(ctx, snap, f.Manifest, &m)
		}, true},
		{"cluster layer", ocispec.Descriptor{Digest: digest.Digest(cluster.Revision)}, func(snap *cache.Snapshot) error {
			it := snap.Record().Items
			for i := range it {
				if it[i].Kind == bundle.KindCluster {
					_, _, err := readClusterLayer(ctx, snap, &it[i])
					return err
				}
			}
			return errors.New("no cluster item")
		}, true},
		{"chart archive", f.Layer, func(snap *cache.Snapshot) error {
			_, err := (&chartItem{name: "app", layer: f.Layer}).load(ctx, snap)
			return err
		}, false},
		{"source tree", tree, func(snap *cache.Snapshot) error {
			return (&source{flux: tree}).extract(ctx, snap, filesys.MakeFsInMemory(), "/src")
		}, true},
	}
	for _, r := range reads {
		t.Run(r.name, func(t *testing.T) {
			dir, snap := f.Imported(t, policy)
			blob := r.blob
			if err := r.read(snap); errors.Is(err, cache.ErrDamaged) || r.intact != (err == nil) {
				t.Fatalf("intact: %v", err)
			}
			testbundle.Flip(t, filepath.Join(dir, "blobs", "sha256", blob.Digest.Encoded()), 40)
			if err := r.read(snap); !errors.Is(err, cache.ErrDamaged) {
				t.Fatalf("damaged: %v, want an error wrapping cache.ErrDamaged", err)
			}
		})
	}
}
