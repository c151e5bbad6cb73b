package bundle_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ferry-gitops/ferry/bundle"
)

// fixture is a bundle built in a layout directory by newFixture.
type fixture struct {
	dir    string
	layout *bundle.Layout
	bundle *bundle.Bundle
	root   ocispec.Descriptor
	// upstream digests of the images carried, by item name
	images map[string]digest.Digest
	// layer of item "app", to damage
	appLayer ocispec.Descriptor
}

var created = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

// pushRaw pushes bytes with a media type and returns their descriptor.
func pushRaw(t testing.TB, l *bundle.Layout, mediaType string, data []byte) ocispec.Descriptor {
	t.Helper()
	d := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}
	if err := l.Push(context.Background(), d, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	return d
}

// pushImage pushes an image's manifest, config and layers byte for byte.
func pushImage(t testing.TB, l *bundle.Layout, img v1.Image) ocispec.Descriptor {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, layer := range layers {
		rc, err := layer.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		mt, _ := layer.MediaType()
		pushRaw(t, l, string(mt), data)
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	pushRaw(t, l, ocispec.MediaTypeImageConfig, cfg)
	raw, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	mt, _ := img.MediaType()
	return pushRaw(t, l, string(mt), raw)
}

func randomImage(t testing.TB, size int64, layers int64) v1.Image {
	t.Helper()
	img, err := random.Image(size, layers)
	if err != nil {
		t.Fatal(err)
	}
	// OCI media types throughout, as most upstreams now publish.
	return mutate.MediaType(mutate.ConfigMediaType(img, "application/vnd.oci.image.config.v1+json"), "application/vnd.oci.image.manifest.v1+json")
}

// platformImage is a random image whose config names its platform, as real images' do.
func platformImage(t testing.TB, arch string) v1.Image {
	t.Helper()
	img := randomImage(t, 16<<10, 1)
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// artifact pushes an OCI artifact manifest with one layer, and returns the manifest descriptor.
func artifact(t testing.TB, l *bundle.Layout, configType, layerType string, content []byte, subject *ocispec.Descriptor) ocispec.Descriptor {
	t.Helper()
	cfg := pushRaw(t, l, configType, []byte("{}"))
	layer := pushRaw(t, l, layerType, content)
	m := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    cfg,
		Layers:    []ocispec.Descriptor{layer},
		Subject:   subject,
	}
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return pushRaw(t, l, ocispec.MediaTypeImageManifest, raw)
}

// newFixture builds a bundle with a single-platform image and its signature, a multi-platform
// image, a chart and a Git artifact, signed by one attachment, in a fresh directory.
func newFixture(t testing.TB, seq uint64) *fixture {
	t.Helper()
	dir := t.TempDir()
	l, err := bundle.NewLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{dir: dir, layout: l, images: map[string]digest.Digest{}}

	app := randomImage(t, 64<<10, 2)
	appDesc := pushImage(t, l, app)
	f.images["app"] = appDesc.Digest
	appLayers, _ := app.Layers()
	ld, _ := appLayers[0].Digest()
	ls, _ := appLayers[0].Size()
	f.appLayer = ocispec.Descriptor{Digest: digest.Digest(ld.String()), Size: ls}
	appSig := artifact(t, l, "application/vnd.oci.image.config.v1+json", "application/vnd.dev.cosign.simplesigning.v1+json",
		[]byte(`{"critical":{"image":{"docker-manifest-digest":"`+string(appDesc.Digest)+`"}}}`), nil)

	// A multi-platform index: two images, the index as upstream would write it.
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: platformImage(t, "amd64"), Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: platformImage(t, "arm64"), Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
	)
	idxManifest, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range idxManifest.Manifests {
		img, err := idx.Image(m.Digest)
		if err != nil {
			t.Fatal(err)
		}
		pushImage(t, l, img)
	}
	rawIdx, err := idx.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	multiDesc := pushRaw(t, l, ocispec.MediaTypeImageIndex, rawIdx)
	f.images["multi"] = multiDesc.Digest

	chart := artifact(t, l, "application/vnd.cncf.helm.config.v1+json", "application/vnd.cncf.helm.chart.content.v1.tar+gzip", bytes.Repeat([]byte("chart"), 1000), nil)
	git := artifact(t, l, "application/vnd.cncf.flux.config.v1+json", "application/vnd.cncf.flux.content.v1.tar+gzip", bytes.Repeat([]byte("tree"), 1000), nil)

	f.bundle = &bundle.Bundle{
		Sequence: seq,
		Created:  created,
		Expires:  created.Add(30 * 24 * time.Hour),
		Items: []bundle.Item{
			{Name: "podinfo", Kind: bundle.KindChart, Source: "https://charts.example/podinfo", Revision: "6.5.0", Descriptor: chart},
			{Name: "app", Kind: bundle.KindImage, Source: "registry.example/team/app:1.0", Revision: string(appDesc.Digest), Descriptor: appDesc,
				Referrers: []bundle.Referrer{{Descriptor: appSig, Subject: appDesc.Digest, Tag: "sha256-" + appDesc.Digest.Encoded() + ".sig"}}},
			{Name: "multi", Kind: bundle.KindImage, Source: "registry.example/team/multi:2.0", Revision: string(multiDesc.Digest), Descriptor: multiDesc},
			{Name: "platform", Kind: bundle.KindGit, Source: "https://git.example/platform.git", Revision: "0123456789abcdef0123456789abcdef01234567", Descriptor: git},
		},
	}
	root, _, err := f.bundle.Descriptor()
	if err != nil {
		t.Fatal(err)
	}
	sig := artifact(t, l, "application/vnd.oci.empty.v1+json", "application/vnd.dev.sigstore.bundle.v0.3+json", []byte(`{"signature":"test"}`), &root)
	f.root, err = bundle.Write(context.Background(), l, f.bundle, []ocispec.Descriptor{sig})
	if err != nil {
		t.Fatal(err)
	}
	if f.root.Digest != root.Digest {
		t.Fatalf("written root %s, computed %s", f.root.Digest, root.Digest)
	}
	return f
}

func statBlob(dir string, d digest.Digest) (int64, error) {
	fi, err := os.Stat(filepath.Join(dir, "blobs", "sha256", d.Encoded()))
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// dirFS opens dir as the parts reader should see a medium: no name or link leaves it.
func dirFS(t testing.TB, dir string) fs.FS {
	t.Helper()
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	return root.FS()
}
