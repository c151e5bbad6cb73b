package bundle_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"
	"testing/fstest"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/ferry-gitops/ferry/bundle"
)

// smallBundle builds a one-item bundle and returns its directory and tar: a fuzzing seed small
// enough to mutate quickly.
func smallBundle(t testing.TB) (string, []byte) {
	t.Helper()
	dir := t.TempDir()
	l, err := bundle.NewLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	desc := artifact(t, l, "application/vnd.cncf.flux.config.v1+json", "application/vnd.cncf.flux.content.v1.tar+gzip", []byte("tree"), nil)
	b := &bundle.Bundle{Sequence: 1, Created: created, Expires: created.Add(time.Hour),
		Items: []bundle.Item{{Name: "platform", Kind: bundle.KindGit, Source: "https://git.example/p.git", Revision: "abc", Descriptor: desc}}}
	if _, err := bundle.Write(context.Background(), l, b, nil); err != nil {
		t.Fatal(err)
	}
	return dir, writeTar(t, dir)
}

var fuzzLimits = bundle.Limits{MaxManifestSize: 64 << 10, MaxBlobs: 64, MaxBlobSize: 1 << 20, MaxTotalSize: 4 << 20, MaxPartListSize: 64 << 10, MaxParts: 64}

// FuzzParseRoot: the root parser never panics, and whatever it accepts is in canonical form.
func FuzzParseRoot(f *testing.F) {
	dir, _ := smallBundle(f)
	res, err := bundle.ReadLayout(context.Background(), dir)
	if err != nil {
		f.Fatal(err)
	}
	root, err := os.ReadFile(filepath.Join(dir, "blobs", "sha256", res.Root.Digest.Encoded()))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(root)
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := bundle.ParseRoot(data)
		if err != nil {
			if _, ok := bundle.AsError(err); !ok {
				t.Fatalf("error is not a bundle.Error: %v", err)
			}
			return
		}
		again, err := b.Marshal()
		if err != nil {
			t.Fatalf("accepted root does not marshal: %v", err)
		}
		if !bytes.Equal(again, data) {
			t.Fatalf("accepted a root that is not canonical:\n%s\n%s", data, again)
		}
	})
}

// FuzzReadTar: the tar reader never panics, never hands a visitor more bytes than declared,
// and accepts only a bundle whose every blob it verified.
func FuzzReadTar(f *testing.F) {
	_, tarball := smallBundle(f)
	f.Add(tarball)
	f.Add(tarball[:len(tarball)/2])
	f.Fuzz(func(t *testing.T, data []byte) {
		var got int64
		visit := func(_ context.Context, e bundle.Entry, r io.Reader) error {
			n, err := io.Copy(io.Discard, r)
			if n > e.Descriptor.Size {
				t.Fatalf("%s: visitor got %d bytes, declared %d", e.Path, n, e.Descriptor.Size)
			}
			got += n
			return err
		}
		res, err := bundle.ReadTar(context.Background(), bytes.NewReader(data), bundle.WithLimits(fuzzLimits), bundle.WithVisitor(visit))
		if err != nil {
			return
		}
		if res.Bundle == nil || res.Root.Digest == "" || got != res.Bytes+int64(len(res.Layout))+int64(len(res.Index)) {
			t.Fatalf("accepted with root %q, %d bytes visited, %d counted", res.Root.Digest, got, res.Bytes)
		}
	})
}

// FuzzParsePartList: the part list parser never panics, and what it accepts adds up.
func FuzzParsePartList(f *testing.F) {
	_, tarball := smallBundle(f)
	dir := f.TempDir()
	if _, err := bundle.Split(context.Background(), bytes.NewReader(tarball), dir, "b.tar", 1024); err != nil {
		f.Fatal(err)
	}
	list, err := os.ReadFile(filepath.Join(dir, bundle.PartListName("b.tar")))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(list)
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := bundle.ParsePartList(data, fuzzLimits)
		if err != nil {
			return
		}
		var sum int64
		names := map[string]bool{}
		for _, p := range l.Parts {
			if names[p.Name] || p.Size <= 0 || p.Size > l.PartSize {
				t.Fatalf("accepted a bad part %+v", p)
			}
			names[p.Name] = true
			sum += p.Size
		}
		if sum != l.Size {
			t.Fatalf("accepted parts adding up to %d, list says %d", sum, l.Size)
		}
	})
}

// FuzzOpenParts: the parts assembler never panics, and yields bytes only when every part and
// the whole verified.
func FuzzOpenParts(f *testing.F) {
	a, b := []byte("first part."), []byte("second")
	whole := append(append([]byte{}, a...), b...)
	list, _ := json.Marshal(bundle.PartList{Format: bundle.PartsFormat, Size: int64(len(whole)), Digest: digest.FromBytes(whole), PartSize: int64(len(a)),
		Parts: []bundle.Part{{Name: "t.part-00001", Size: int64(len(a)), Digest: digest.FromBytes(a)}, {Name: "t.part-00002", Size: int64(len(b)), Digest: digest.FromBytes(b)}}})
	f.Add(list, a, b)
	f.Fuzz(func(t *testing.T, list, p1, p2 []byte) {
		fsys := fstest.MapFS{"t.parts.json": {Data: list}, "t.part-00001": {Data: p1}, "t.part-00002": {Data: p2}}
		r, l, err := bundle.OpenParts(fsys, "t.parts.json", fuzzLimits)
		if err != nil {
			return
		}
		out, err := io.ReadAll(r)
		if err != nil {
			return
		}
		if int64(len(out)) != l.Size || digest.FromBytes(out) != l.Digest {
			t.Fatalf("assembled %d bytes hashing to %s; list says %d, %s", len(out), digest.FromBytes(out), l.Size, l.Digest)
		}
	})
}
