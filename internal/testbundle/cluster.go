package testbundle

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/pack"
	"github.com/ferry-gitops/ferry/spec"
)

// ClusterItem writes files (paths relative to a cluster folder, slash-separated, and their
// content) into a new folder and packs it into l as `mirror pack` packs a spec's cluster.path,
// returning the cluster item.
func ClusterItem(t testing.TB, l *bundle.Layout, files map[string]string) bundle.Item {
	t.Helper()
	dir := t.TempDir()
	for name, data := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	it, err := pack.ClusterItem(context.Background(), l, &spec.Spec{Cluster: &spec.Cluster{Path: dir}})
	if err != nil {
		t.Fatal(err)
	}
	return it
}

// ClusterItemOfLayer pushes a cluster item whose layer is layer as given, which may be
// anything (mirror pack would refuse to write most malformed layers), and returns the item.
func ClusterItemOfLayer(t testing.TB, l *bundle.Layout, layer []byte) bundle.Item {
	t.Helper()
	Push(t, l, ocispec.MediaTypeEmptyJSON, ocispec.DescriptorEmptyJSON.Data)
	ld := Push(t, l, bundle.ClusterManifestsMediaType, layer)
	raw, md, err := bundle.ClusterManifest(ld)
	if err != nil {
		t.Fatal(err)
	}
	Push(t, l, ocispec.MediaTypeImageManifest, raw)
	return bundle.Item{Name: bundle.ClusterItemName, Kind: bundle.KindCluster, Source: "./cluster", Revision: string(ld.Digest), Descriptor: md}
}
