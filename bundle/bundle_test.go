package bundle_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ferry-gitops/ferry/bundle"
)

// readTree returns every file under dir by slash path.
func readTree(t testing.TB, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		b, err := os.ReadFile(p)
		files[filepath.ToSlash(rel)] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func writeTar(t testing.TB, dir string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := bundle.WriteTar(context.Background(), &buf, dir); err != nil {
		t.Fatalf("write tar of %s: %v", dir, err)
	}
	return buf.Bytes()
}

func TestRoundTripDirTarPartsDir(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, 7)

	res, err := bundle.ReadLayout(ctx, f.dir)
	if err != nil {
		t.Fatal(err)
	}
	if res.Bundle.Sequence != 7 || len(res.Bundle.Items) != 4 || len(res.Attachments) != 1 || res.Root.Digest != f.root.Digest {
		t.Fatalf("read back %v, root %v, %d attachments", res.Bundle, res.Root.Digest, len(res.Attachments))
	}

	tar1 := writeTar(t, f.dir)
	partsDir := t.TempDir()
	list, err := bundle.Split(ctx, bytes.NewReader(tar1), partsDir, "bundle.tar", 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Parts) < 3 || list.Size != int64(len(tar1)) {
		t.Fatalf("split %d bytes into %d parts (list size %d)", len(tar1), len(list.Parts), list.Size)
	}
	joined, _, err := bundle.OpenParts(dirFS(t, partsDir), bundle.PartListName("bundle.tar"), bundle.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	dir2 := filepath.Join(t.TempDir(), "copy")
	res2, err := bundle.ExtractTar(ctx, joined, dir2)
	if err != nil {
		t.Fatalf("extract joined parts: %v", err)
	}
	if res2.Root.Digest != f.root.Digest || res2.Blobs != res.Blobs || res2.Bytes != res.Bytes {
		t.Fatalf("extracted root %s with %d blobs (%d bytes), want %s with %d (%d)", res2.Root.Digest, res2.Blobs, res2.Bytes, f.root.Digest, res.Blobs, res.Bytes)
	}

	want, got := readTree(t, f.dir), readTree(t, dir2)
	if len(want) != len(got) {
		t.Fatalf("directory has %d files after the round trip, %d before", len(got), len(want))
	}
	for name, b := range want {
		if !bytes.Equal(got[name], b) {
			t.Fatalf("%s differs after the round trip", name)
		}
	}
	tar2 := writeTar(t, dir2)
	if !bytes.Equal(tar1, tar2) {
		t.Fatalf("tar of the round-tripped directory differs (%d vs %d bytes)", len(tar2), len(tar1))
	}
	parts2 := t.TempDir()
	if _, err := bundle.Split(ctx, bytes.NewReader(tar2), parts2, "bundle.tar", 64<<10); err != nil {
		t.Fatal(err)
	}
	pa, pb := readTree(t, partsDir), readTree(t, parts2)
	for name, b := range pa {
		if !bytes.Equal(pb[name], b) {
			t.Fatalf("part %s differs between two splits of the same bundle", name)
		}
	}
	t.Logf("round trip: dir -> tar (%d bytes) -> %d parts -> dir: %d files, %d blobs identical; tar and parts identical again", len(tar1), len(list.Parts), len(want), res.Blobs)
}

func TestSameBundleSameBytes(t *testing.T) {
	f := newFixture(t, 1)
	// A second layout holding the same blobs, built independently from the same bundle.
	dir := t.TempDir()
	l, err := bundle.NewLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range readTree(t, filepath.Join(f.dir, "blobs")) {
		pushRaw(t, l, "application/octet-stream", b)
	}
	res, err := bundle.ReadLayout(context.Background(), f.dir)
	if err != nil {
		t.Fatal(err)
	}
	root, err := bundle.Write(context.Background(), l, f.bundle, res.Attachments)
	if err != nil {
		t.Fatal(err)
	}
	if root.Digest != f.root.Digest {
		t.Fatalf("same bundle, different roots: %s and %s", root.Digest, f.root.Digest)
	}
	if !bytes.Equal(writeTar(t, dir), writeTar(t, f.dir)) {
		t.Fatal("same bundle, different tars")
	}
}

func TestUpstreamBytesKept(t *testing.T) {
	f := newFixture(t, 1)
	res, err := bundle.ReadLayout(context.Background(), f.dir)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range f.images {
		it := res.Bundle.Item(name)
		if it == nil || it.Descriptor.Digest != want || it.Revision != string(want) {
			t.Fatalf("item %s: %+v, want upstream digest %s", name, it, want)
		}
		b, err := os.ReadFile(filepath.Join(f.dir, "blobs", "sha256", want.Encoded()))
		if err != nil {
			t.Fatal(err)
		}
		if got := digest.FromBytes(b); got != want {
			t.Fatalf("item %s: stored manifest hashes to %s, upstream %s", name, got, want)
		}
	}
}

// An image restricted to some platforms carries the upstream index byte for byte and only the
// children for those platforms; without the restriction the same layout is incomplete.
func TestPlatformFilteredImage(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, 1)
	multi := f.bundle.Item("multi")
	raw, err := os.ReadFile(filepath.Join(f.dir, "blobs", "sha256", multi.Descriptor.Digest.Encoded()))
	if err != nil {
		t.Fatal(err)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(raw, &idx); err != nil {
		t.Fatal(err)
	}
	// Drop the arm64 image's manifest from the layout.
	for _, m := range idx.Manifests {
		if m.Platform.Architecture == "arm64" {
			os.Remove(filepath.Join(f.dir, "blobs", "sha256", m.Digest.Encoded()))
		}
	}
	if _, err := bundle.ReadLayout(ctx, f.dir); err == nil {
		t.Fatal("an index missing a platform was accepted without a platform restriction")
	}
	b := *f.bundle
	b.Items = append([]bundle.Item{}, f.bundle.Items...)
	for i := range b.Items {
		if b.Items[i].Name == "multi" {
			b.Items[i].Platforms = []string{"linux/amd64"}
		}
	}
	root, err := bundle.Write(ctx, f.layout, &b, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := bundle.ReadLayout(ctx, f.dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Bundle.Item("multi"); res.Root.Digest != root.Digest || got.Descriptor.Digest != f.images["multi"] || len(got.Platforms) != 1 {
		t.Fatalf("item multi read back as %+v", got)
	}
}
