package medium_test

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ferry-gitops/ferry/bundle"
)

// testBundle is a small complete bundle in a layout directory: a chart and a Git artifact as
// items, signed by a referrer of the root and by a sha256-<root hex>.sig manifest.
type testBundle struct {
	dir  string
	root ocispec.Descriptor
	// items are the item manifests by name; layer is the chart's content layer.
	items map[string]ocispec.Descriptor
	layer ocispec.Descriptor
	// referrer and tagged are the root's two attachments.
	referrer, tagged ocispec.Descriptor
}

// newTestBundle builds a bundle of about 48 KiB of content; seed varies the bytes.
func newTestBundle(t *testing.T, seed uint64) *testBundle {
	t.Helper()
	ctx := context.Background()
	rnd := rand.New(rand.NewChaCha8([32]byte{byte(seed)}))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rnd.Uint32())
		}
		return b
	}
	tb := &testBundle{dir: t.TempDir(), items: map[string]ocispec.Descriptor{}}
	l, err := bundle.NewLayout(tb.dir)
	if err != nil {
		t.Fatal(err)
	}
	chart, chartLayer := pushArtifact(t, l, "application/vnd.cncf.helm.config.v1+json", "application/vnd.cncf.helm.chart.content.v1.tar+gzip", random(20<<10), nil)
	git, _ := pushArtifact(t, l, "application/vnd.cncf.flux.config.v1+json", "application/vnd.cncf.flux.content.v1.tar+gzip", random(24<<10), nil)
	tb.items["podinfo"], tb.items["platform"], tb.layer = chart, git, chartLayer
	created := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	b := &bundle.Bundle{
		Sequence: seed + 1,
		Created:  created,
		Expires:  created.Add(30 * 24 * time.Hour),
		Items: []bundle.Item{
			{Name: "podinfo", Kind: bundle.KindChart, Source: "https://charts.example/podinfo", Revision: "6.5.0", Descriptor: chart},
			{Name: "platform", Kind: bundle.KindGit, Source: "https://git.example/platform.git", Revision: "0123456789abcdef0123456789abcdef01234567", Descriptor: git},
		},
	}
	root, _, err := b.Descriptor()
	if err != nil {
		t.Fatal(err)
	}
	tb.referrer, _ = pushArtifact(t, l, "application/vnd.oci.empty.v1+json", "application/vnd.dev.sigstore.bundle.v0.3+json", []byte(`{"signature":"referrer"}`), &root)
	tb.tagged, _ = pushArtifact(t, l, ocispec.MediaTypeImageConfig, "application/vnd.dev.cosign.simplesigning.v1+json",
		[]byte(`{"critical":{"image":{"docker-manifest-digest":"`+string(root.Digest)+`"}}}`), nil)
	tagged := tb.tagged
	tagged.Annotations = map[string]string{ocispec.AnnotationRefName: "sha256-" + root.Digest.Encoded() + ".sig"}
	if tb.root, err = bundle.Write(ctx, l, b, []ocispec.Descriptor{tb.referrer, tagged}); err != nil {
		t.Fatal(err)
	}
	return tb
}

// pushArtifact pushes an OCI artifact manifest with a "{}" config and one layer, and returns the
// manifest's and the layer's descriptors.
func pushArtifact(t *testing.T, l *bundle.Layout, configType, layerType string, data []byte, subject *ocispec.Descriptor) (ocispec.Descriptor, ocispec.Descriptor) {
	t.Helper()
	m := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    pushBlob(t, l, configType, []byte("{}")),
		Layers:    []ocispec.Descriptor{pushBlob(t, l, layerType, data)},
		Subject:   subject,
	}
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return pushBlob(t, l, ocispec.MediaTypeImageManifest, raw), m.Layers[0]
}

func pushBlob(t *testing.T, l *bundle.Layout, mediaType string, data []byte) ocispec.Descriptor {
	t.Helper()
	d := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}
	if err := l.Push(context.Background(), d, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	return d
}

// blobPath is where a layout keeps a blob.
func blobPath(dir string, d digest.Digest) string {
	return filepath.Join(dir, "blobs", "sha256", d.Encoded())
}

// blobFiles reads every blob file of a layout, by file name.
func blobFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, "blobs", "sha256"))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, "blobs", "sha256", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = data
	}
	return files
}
