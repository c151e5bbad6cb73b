// Package testbundle builds small real bundles for tests and damages them the ways a hostile
// or broken medium would: flipped bytes, rewritten roots and index files, edited tar streams.
package testbundle

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ferry-gitops/ferry/bundle"
)

// Created is the creation time of every bundle built here.
var Created = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

// Fixture is a bundle in a layout directory.
type Fixture struct {
	Dir    string
	Layout *bundle.Layout
	Bundle *bundle.Bundle
	Root   ocispec.Descriptor
	// Layer is a layer of item "app"; Manifest is item "app"'s manifest.
	Layer, Manifest ocispec.Descriptor
}

// Push pushes bytes with a media type into l and returns their descriptor.
func Push(t testing.TB, l *bundle.Layout, mediaType string, data []byte) ocispec.Descriptor {
	t.Helper()
	d := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}
	if err := l.Push(context.Background(), d, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	return d
}

// Artifact pushes a manifest with a config and the given layers, and returns its descriptor.
func Artifact(t testing.TB, l *bundle.Layout, configType string, layers map[string][]byte, subject *ocispec.Descriptor) ocispec.Descriptor {
	t.Helper()
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Config: Push(t, l, configType, []byte("{}")), Subject: subject}
	for _, mt := range sortedKeys(layers) {
		m.Layers = append(m.Layers, Push(t, l, mt, layers[mt]))
	}
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return Push(t, l, ocispec.MediaTypeImageManifest, raw)
}

func sortedKeys(m map[string][]byte) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	for i := range ks {
		for j := i + 1; j < len(ks); j++ {
			if ks[j] < ks[i] {
				ks[i], ks[j] = ks[j], ks[i]
			}
		}
	}
	return ks
}

// SignFunc signs a root in a layout and returns the attachment(s) to write with it.
type SignFunc func(t testing.TB, l *bundle.Layout, root ocispec.Descriptor) []ocispec.Descriptor

// New builds a bundle with sequence seq holding an image-like item "app" (two layers) and a
// Git-like item "platform", signed by sign (nil: unsigned), in a new folder.
func New(t testing.TB, seq uint64, previous digest.Digest, sign SignFunc) *Fixture {
	t.Helper()
	dir := t.TempDir()
	l, err := bundle.NewLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	layer := bytes.Repeat([]byte("ferry layer "), 2000)
	app := Artifact(t, l, ocispec.MediaTypeImageConfig, map[string][]byte{
		ocispec.MediaTypeImageLayerGzip: layer,
		ocispec.MediaTypeImageLayer:     []byte("second layer"),
	}, nil)
	git := Artifact(t, l, "application/vnd.cncf.flux.config.v1+json", map[string][]byte{"application/vnd.cncf.flux.content.v1.tar+gzip": []byte("tree")}, nil)
	b := &bundle.Bundle{Sequence: seq, Created: Created, Expires: Created.Add(30 * 24 * time.Hour), Previous: previous, Items: []bundle.Item{
		{Name: "app", Kind: bundle.KindImage, Source: "registry.example/app:1", Revision: string(app.Digest), Descriptor: app},
		{Name: "platform", Kind: bundle.KindGit, Source: "https://git.example/p.git", Revision: "abc", Descriptor: git},
	}}
	f := &Fixture{Dir: dir, Layout: l, Bundle: b, Manifest: app,
		Layer: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromBytes(layer), Size: int64(len(layer))}}
	f.Write(t, sign)
	return f
}

// Write (re)writes f's root and index.json from f.Bundle, signed by sign.
func (f *Fixture) Write(t testing.TB, sign SignFunc) {
	t.Helper()
	root, _, err := f.Bundle.Descriptor()
	if err != nil {
		t.Fatal(err)
	}
	var atts []ocispec.Descriptor
	if sign != nil {
		atts = sign(t, f.Layout, root)
	}
	if f.Root, err = bundle.Write(context.Background(), f.Layout, f.Bundle, atts); err != nil {
		t.Fatal(err)
	}
}

// BlobPath is the path of a blob in the fixture's layout.
func (f *Fixture) BlobPath(d digest.Digest) string {
	return filepath.Join(f.Dir, "blobs", "sha256", d.Encoded())
}

// Flip flips one byte of a file.
func Flip(t testing.TB, path string, at int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[at%len(b)] ^= 0x01
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// ForgeRoot writes a root made by edit over f's current root, and an index.json naming it, with
// no checks (as a hostile packer could), signed by sign. It returns the new root.
func (f *Fixture) ForgeRoot(t testing.TB, edit func(*ocispec.Index), sign SignFunc) ocispec.Descriptor {
	t.Helper()
	raw, err := os.ReadFile(f.BlobPath(f.Root.Digest))
	if err != nil {
		t.Fatal(err)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(raw, &idx); err != nil {
		t.Fatal(err)
	}
	edit(&idx)
	if raw, err = json.Marshal(idx); err != nil {
		t.Fatal(err)
	}
	root := Push(t, f.Layout, ocispec.MediaTypeImageIndex, raw)
	root.ArtifactType = bundle.ArtifactType
	var atts []ocispec.Descriptor
	if sign != nil {
		atts = sign(t, f.Layout, root)
	}
	manifests := append([]ocispec.Descriptor(nil), atts...)
	r := root
	r.Annotations = map[string]string{ocispec.AnnotationRefName: bundle.RootRef}
	manifests = append(manifests, r)
	var cur ocispec.Index
	b, err := os.ReadFile(filepath.Join(f.Dir, bundle.IndexFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &cur); err != nil {
		t.Fatal(err)
	}
	for _, m := range cur.Manifests {
		if n := m.Annotations[ocispec.AnnotationRefName]; n != bundle.RootRef && bundle.ValidName(n) {
			manifests = append(manifests, m)
		}
	}
	cur.Manifests = manifests
	if b, err = json.Marshal(cur); err != nil {
		t.Fatal(err)
	}
	if err := f.Layout.WriteIndex(b); err != nil {
		t.Fatal(err)
	}
	f.Root = root
	return root
}

// Tar returns the fixture's bundle as a tar.
func (f *Fixture) Tar(t testing.TB) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := bundle.WriteTar(context.Background(), &buf, f.Dir); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Entry is one entry of a tar held in memory.
type Entry struct {
	Header tar.Header
	Data   []byte
}

// SplitTar returns a tar's entries.
func SplitTar(t testing.TB, b []byte) []Entry {
	t.Helper()
	var out []Entry
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, Entry{*hdr, data})
	}
}

// JoinTar writes entries as a tar; regular files get their data's size.
func JoinTar(t testing.TB, entries []Entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.Header
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.Data))
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.Data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Find returns the index of the tar entry named name.
func Find(t testing.TB, es []Entry, name string) int {
	t.Helper()
	for i, e := range es {
		if e.Header.Name == name {
			return i
		}
	}
	t.Fatalf("no tar entry %s", name)
	return -1
}

// BlobName is a blob's name in a layout or tar.
func BlobName(d digest.Digest) string { return "blobs/sha256/" + d.Encoded() }
