package e2e

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
	"github.com/ferry-gitops/ferry/medium"
	"github.com/ferry-gitops/ferry/verify"
)

// rewriteIndexJSON edits a fixture's index.json in place (after the root is written).
func rewriteIndexJSON(t testing.TB, f *testbundle.Fixture, edit func(idx *ocispec.Index)) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(f.Dir, bundle.IndexFile))
	if err != nil {
		t.Fatal(err)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatal(err)
	}
	edit(&idx)
	b, err = json.Marshal(idx)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Layout.WriteIndex(b); err != nil {
		t.Fatal(err)
	}
}

// editTarIndex edits the index.json entry of a bundle tar.
func editTarIndex(t testing.TB, tarball []byte, edit func(idx *ocispec.Index)) []byte {
	t.Helper()
	es := testbundle.SplitTar(t, tarball)
	i := testbundle.Find(t, es, bundle.IndexFile)
	var idx ocispec.Index
	if err := json.Unmarshal(es[i].Data, &idx); err != nil {
		t.Fatal(err)
	}
	edit(&idx)
	b, err := json.Marshal(idx)
	if err != nil {
		t.Fatal(err)
	}
	es[i].Data = b
	es[i].Header.Size = int64(len(b))
	return testbundle.JoinTar(t, es)
}

// stagedBlobs lists the blobs in a cache's staging folders now.
func stagedBlobs(t testing.TB, cacheDir string) []string {
	t.Helper()
	var out []string
	stages, _ := os.ReadDir(filepath.Join(cacheDir, "staging"))
	for _, s := range stages {
		blobs, _ := os.ReadDir(filepath.Join(cacheDir, "staging", s.Name(), "blobs"))
		for _, b := range blobs {
			out = append(out, b.Name())
		}
	}
	return out
}

// The root cannot arrive as anything but the root. An unsigned bundle whose index.json lists the
// root's descriptor again as an attachment (so that, read first under that name, the root would
// be kept as a signature and its trust never decided) is refused by cache.Import through the
// medium reader before a single blob is read: no blob reaches the visitor, none is staged, and
// the cache is unchanged. On a directory and on a tar.
func TestRootDisguisedAsAttachmentStagesNothing(t *testing.T) {
	ctx := context.Background()
	s := testbundle.NewSigner(t)
	policy := verify.Policy{Keys: []verify.TrustedKey{s.Key("ops")}, Now: func() time.Time { return testbundle.Created.Add(time.Hour) }}
	base := testbundle.New(t, 1, "", s.Sign)

	hostile := testbundle.New(t, 2, base.Root.Digest, nil) // unsigned
	tarball := hostile.Tar(t)
	disguise := func(idx *ocispec.Index) {
		disguised := hostile.Root // no name: what an attachment may be
		idx.Manifests = append([]ocispec.Descriptor{disguised}, idx.Manifests...)
	}
	rewriteIndexJSON(t, hostile, disguise)
	tarPath := filepath.Join(t.TempDir(), "hostile.tar")
	if err := os.WriteFile(tarPath, editTarIndex(t, tarball, disguise), 0o644); err != nil {
		t.Fatal(err)
	}

	for _, loc := range []medium.Location{medium.Layout(hostile.Dir), medium.TarFile(tarPath)} {
		t.Run(loc.Kind().String(), func(t *testing.T) {
			dir := t.TempDir()
			c, err := cache.Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Import(ctx, func(opts ...bundle.ReadOption) (*bundle.Result, error) {
				return medium.Read(ctx, medium.Layout(base.Dir), medium.WithReadOptions(opts...))
			}, policy); err != nil {
				t.Fatalf("base bundle: %v", err)
			}
			before := cacheView(t, dir)

			var visited []bundle.Entry
			var staged []string
			observe := bundle.WithObserver(func(e bundle.Entry) {
				// Called before each file's bytes reach the importer: anything staged so far shows.
				if e.Path != bundle.LayoutFile && e.Path != bundle.IndexFile {
					visited = append(visited, e)
				}
				staged = append(staged, stagedBlobs(t, dir)...)
			})
			_, err = c.Import(ctx, func(opts ...bundle.ReadOption) (*bundle.Result, error) {
				return medium.Read(ctx, loc, medium.WithReadOptions(append(opts, observe)...))
			}, policy)
			staged = append(staged, stagedBlobs(t, dir)...)
			if err == nil {
				t.Fatal("an unsigned bundle with its root disguised as an attachment was accepted")
			}
			if len(visited) != 0 {
				t.Fatalf("the importer was handed %d blob(s) of an untrusted bundle before the refusal, first %s %s", len(visited), visited[0].Item, visited[0].Descriptor.Digest)
			}
			if len(staged) != 0 {
				t.Fatalf("blobs of an untrusted bundle were staged: %v", staged)
			}
			r, ok := bundle.AsError(err)
			if !ok {
				t.Fatalf("not a rejection: %v", err)
			}
			if r.Item != bundle.ItemRoot || r.Blob != hostile.Root.Digest {
				t.Fatalf("rejection names %s %s, want the root %s: %v", r.Item, r.Blob, hostile.Root.Digest, err)
			}
			if !strings.Contains(err.Error(), "lists the root again") {
				t.Fatalf("rejection does not say the root is listed again: %v", err)
			}
			if after := cacheView(t, dir); after != before {
				t.Fatalf("cache changed:\n%s\n---\n%s", before, after)
			}
			t.Logf("refused, nothing read or staged: %v", err)
		})
	}
}
