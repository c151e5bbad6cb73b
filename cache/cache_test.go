package cache_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/cache"
	"github.com/ferry-gitops/ferry/internal/testbundle"
	"github.com/ferry-gitops/ferry/internal/testenv"
	"github.com/ferry-gitops/ferry/medium"
	"github.com/ferry-gitops/ferry/verify"
)

func keyPair(t testing.TB) (testbundle.SignFunc, verify.Policy) {
	s := testbundle.NewSigner(t)
	return s.Sign, verify.Policy{Keys: []verify.TrustedKey{s.Key("ops")}, Now: func() time.Time { return testbundle.Created.Add(time.Hour) }}
}

func open(t testing.TB, dir string) *cache.Cache {
	t.Helper()
	c, err := cache.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func fromDir(dir string) cache.ReadFunc {
	return func(opts ...bundle.ReadOption) (*bundle.Result, error) {
		return bundle.ReadLayout(context.Background(), dir, opts...)
	}
}

// snapshot lists every file of a cache but its lock, with its digest.
func snapshot(t testing.TB, dir string) string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() == "lock" {
			return err
		}
		b, _ := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		out = append(out, rel+" "+string(digest.FromBytes(b)))
		return nil
	})
	sort.Strings(out)
	return strings.Join(out, "\n")
}

// The same bundle imports from every medium into the same cache content, and a second import
// of it changes nothing.
func TestImportFromEveryMedium(t *testing.T) {
	ctx := context.Background()
	sign, policy := keyPair(t)
	f := testbundle.New(t, 1, "", sign)
	tarball := f.Tar(t)
	tarPath := filepath.Join(t.TempDir(), "bundle.tar")
	os.WriteFile(tarPath, tarball, 0o644)
	partsDir := t.TempDir()
	if _, err := bundle.Split(ctx, bytes.NewReader(tarball), partsDir, "bundle.tar", 2<<10); err != nil {
		t.Fatal(err)
	}
	minio := testenv.NewMinIO(t)
	if _, err := minio.MakeBucket(ctx, "drop"); err != nil {
		t.Fatal(err)
	}
	client, _ := minio.Client()
	if _, err := medium.Write(ctx, medium.S3("drop", "ferry", "bundle-1.tar").Split(4<<10), f.Dir, medium.WithS3Client(client)); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_ACCESS_KEY_ID", minio.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", minio.SecretKey)
	reg := testenv.NewRegistry(t)
	if _, err := medium.Write(ctx, medium.Registry(reg.Host+"/ferry/bundles", "latest"), f.Dir, medium.WithPlainHTTP(reg.Host)); err != nil {
		t.Fatal(err)
	}
	open_ := []medium.Option{medium.WithS3Endpoint(minio.Endpoint, true), medium.WithPlainHTTP(reg.Host)}
	sources := map[string]string{
		"directory": f.Dir,
		"tar":       tarPath,
		"parts":     filepath.Join(partsDir, "bundle.tar.parts.json"),
		"s3":        "s3://drop/ferry/bundle-1.tar.parts.json",
		"registry":  "oci://" + reg.Host + "/ferry/bundles:latest",
	}
	var want string
	for _, name := range []string{"directory", "tar", "parts", "s3", "registry"} {
		src := sources[name]
		dir := t.TempDir()
		c := open(t, dir)
		loc, err := medium.Parse(src)
		if err != nil {
			t.Fatal(err)
		}
		read := func(opts ...bundle.ReadOption) (*bundle.Result, error) {
			return medium.Read(ctx, loc, append(open_, medium.WithReadOptions(opts...))...)
		}
		res, err := c.Import(ctx, read, policy)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if res.Record.Root != f.Root.Digest || res.New == 0 {
			t.Fatalf("%s: imported %+v", name, res)
		}
		rep, err := c.Fsck(ctx, false)
		if err != nil || !rep.OK() {
			t.Fatalf("%s: fsck %+v %v", name, rep, err)
		}
		blobs := snapshotBlobs(t, dir)
		if want == "" {
			want = blobs
		} else if blobs != want {
			t.Fatalf("%s: cache blobs differ from the directory import's", name)
		}
		before := snapshot(t, dir)
		again, err := c.Import(ctx, read, policy)
		if err != nil || !again.AlreadyAccepted {
			t.Fatalf("%s: second import: %+v %v", name, again, err)
		}
		if snapshot(t, dir) != before {
			t.Fatalf("%s: importing the same bundle twice changed the cache", name)
		}
		t.Logf("%s: bundle %d imported (%d blobs, %d new), fsck whole, second import changed nothing", name, res.Record.Sequence, res.Blobs, res.New)
	}
}

// itemBlobs lists the blobs of the current bundle's items, as the cache holds them.
func itemBlobs(t testing.TB, c *cache.Cache) string {
	t.Helper()
	recs, err := c.Records()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	visit := func(_ context.Context, e bundle.Entry, _ io.Reader) error {
		if e.Item != "root" && e.Item != "attachment" && strings.HasPrefix(e.Path, "blobs/") {
			out = append(out, string(e.Descriptor.Digest))
		}
		return nil
	}
	if _, err := c.ReadBundle(context.Background(), recs[len(recs)-1], bundle.WithVisitor(visit)); err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

func snapshotBlobs(t testing.TB, dir string) string {
	entries, err := os.ReadDir(filepath.Join(dir, "blobs", "sha256"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return strings.Join(names, ",")
}

// A rejected bundle leaves the cache byte for byte as it was.
func TestRejectedImportChangesNothing(t *testing.T) {
	ctx := context.Background()
	sign, policy := keyPair(t)
	dir := t.TempDir()
	c := open(t, dir)
	b1 := testbundle.New(t, 1, "", sign)
	if _, err := c.Import(ctx, fromDir(b1.Dir), policy); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, dir)
	b2 := testbundle.New(t, 2, b1.Root.Digest, sign)
	testbundle.Flip(t, b2.BlobPath(b2.Layer.Digest), 9)
	_, err := c.Import(ctx, fromDir(b2.Dir), policy)
	if r, ok := bundle.AsError(err); !ok || r.Check != bundle.CheckDigest {
		t.Fatalf("want a digest rejection, got %v", err)
	}
	if snapshot(t, dir) != before {
		t.Fatal("a rejected import changed the cache")
	}
	// Rollback: the older bundle is refused too.
	old := testbundle.New(t, 1, "", sign)
	old.Bundle.Expires = old.Bundle.Expires.Add(time.Minute)
	old.Write(t, sign)
	if _, err := c.Import(ctx, fromDir(old.Dir), policy); err == nil {
		t.Fatal("accepted a second bundle 1")
	}
	if snapshot(t, dir) != before {
		t.Fatal("a rejected import changed the cache")
	}
}

// A delta carrying only what the cache lacks leaves the cache as the full bundle would.
func TestDeltaImportEqualsFull(t *testing.T) {
	ctx := context.Background()
	sign, policy := keyPair(t)
	b1 := testbundle.New(t, 1, "", sign)
	full := testbundle.New(t, 2, b1.Root.Digest, nil)
	extra := testbundle.Artifact(t, full.Layout, ocispec.MediaTypeImageConfig, map[string][]byte{ocispec.MediaTypeImageLayer: []byte("only in bundle 2")}, nil)
	full.Bundle.Items = append(full.Bundle.Items, bundle.Item{Name: "extra", Kind: bundle.KindArtifact, Source: "x", Revision: "1", Descriptor: extra})
	full.Write(t, sign)

	// The delta: the same root but with base set, and without the blobs bundle 1 carried.
	delta := testbundle.New(t, 2, b1.Root.Digest, nil)
	testbundle.Artifact(t, delta.Layout, ocispec.MediaTypeImageConfig, map[string][]byte{ocispec.MediaTypeImageLayer: []byte("only in bundle 2")}, nil)
	delta.Bundle.Items = full.Bundle.Items
	delta.Bundle.Base = b1.Root.Digest
	for _, it := range b1.Bundle.Items {
		os.Remove(delta.BlobPath(it.Descriptor.Digest))
	}
	os.Remove(delta.BlobPath(b1.Layer.Digest))
	root, data, err := delta.Bundle.Descriptor()
	if err != nil {
		t.Fatal(err)
	}
	testbundle.Push(t, delta.Layout, ocispec.MediaTypeImageIndex, data)
	idx, _ := bundle.LayoutIndex(root, delta.Bundle, sign(t, delta.Layout, root))
	delta.Layout.WriteIndex(idx)

	a, b := t.TempDir(), t.TempDir()
	ca, cb := open(t, a), open(t, b)
	for _, c := range []*cache.Cache{ca, cb} {
		if _, err := c.Import(ctx, fromDir(b1.Dir), policy); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ca.Import(ctx, fromDir(full.Dir), policy); err != nil {
		t.Fatal(err)
	}
	res, err := cb.Import(ctx, fromDir(delta.Dir), policy)
	if err != nil {
		t.Fatalf("delta: %v", err)
	}
	// The roots differ (a delta names its base) and so do their signatures; every item's blob
	// is the same.
	if ia, ib := itemBlobs(t, ca), itemBlobs(t, cb); ia != ib || ia == "" {
		t.Fatalf("the cache after the delta holds other item blobs than after the full bundle:\n%s\n%s", ia, ib)
	}
	if rep, err := cb.Fsck(ctx, false); err != nil || !rep.OK() {
		t.Fatalf("fsck after the delta: %+v %v", rep, err)
	}
	t.Logf("delta: %d blobs carried, %d new; cache equals the full bundle's", res.Blobs, res.New)
}

// fsck finds a damaged blob, names it, and quarantines it when asked; gc keeps the last bundles.
func TestFsckAndGC(t *testing.T) {
	ctx := context.Background()
	sign, policy := keyPair(t)
	dir := t.TempDir()
	c := open(t, dir)
	var prev digest.Digest
	var last *testbundle.Fixture
	roots := map[digest.Digest]uint64{}
	for seq := uint64(1); seq <= 4; seq++ {
		f := testbundle.New(t, seq, prev, nil)
		f.Bundle.Items[1].Revision = strings.Repeat("r", int(seq)) // each bundle differs
		extra := testbundle.Artifact(t, f.Layout, ocispec.MediaTypeImageConfig, map[string][]byte{ocispec.MediaTypeImageLayer: bytes.Repeat([]byte{byte(seq)}, 100)}, nil)
		f.Bundle.Items = append(f.Bundle.Items, bundle.Item{Name: "extra", Kind: bundle.KindArtifact, Source: "x", Revision: "1", Descriptor: extra})
		f.Write(t, sign)
		if _, err := c.Import(ctx, fromDir(f.Dir), policy); err != nil {
			t.Fatalf("bundle %d: %v", seq, err)
		}
		prev, last = f.Root.Digest, f
		roots[f.Root.Digest] = seq
	}
	rep, err := c.GC(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Kept) != 2 || rep.Kept[1] != 4 || len(rep.Dropped) != 2 || rep.Removed == 0 {
		t.Fatalf("gc: %+v", rep)
	}
	// The dropped bundles are still known as accepted once, by root and sequence.
	if recs, _ := c.Records(); len(recs) != 2 {
		t.Fatalf("%d records after gc, want 2", len(recs))
	}
	accepted, err := c.AcceptedRoots()
	if err != nil || !reflect.DeepEqual(accepted, roots) {
		t.Fatalf("accepted roots after gc: %v (%v), want %v", accepted, err, roots)
	}
	if f, err := c.Fsck(ctx, false); err != nil || !f.OK() {
		t.Fatalf("fsck after gc: %+v %v", f, err)
	}
	// Damage a blob the current bundle needs.
	victim := filepath.Join(dir, "blobs", "sha256", last.Layer.Digest.Encoded())
	testbundle.Flip(t, victim, 3)
	f, err := c.Fsck(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if f.OK() || !strings.Contains(f.Problems[0].What, last.Layer.Digest.Encoded()) || f.Problems[0].Quarantined == "" {
		t.Fatalf("fsck did not find and quarantine the damaged blob: %+v", f)
	}
	if _, err := os.Stat(victim); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("damaged blob still in place")
	}
	t.Logf("gc kept %v, dropped %v, removed %d blobs; fsck found %d problem(s): %s: %s", rep.Kept, rep.Dropped, rep.Removed, len(f.Problems), f.Problems[0].What, f.Problems[0].Issue)
}

// Only one writer at a time.
func TestOneWriter(t *testing.T) {
	dir := t.TempDir()
	open(t, dir)
	if _, err := cache.Open(dir); err == nil {
		t.Fatal("a second writer opened the cache")
	}
}

// A reader serving a blob while gc removes it reads it whole: gc unlinks, it never truncates.
func TestGCWhileReading(t *testing.T) {
	ctx := context.Background()
	sign, policy := keyPair(t)
	c := open(t, t.TempDir())
	b1 := testbundle.New(t, 1, "", sign)
	if _, err := c.Import(ctx, fromDir(b1.Dir), policy); err != nil {
		t.Fatal(err)
	}
	b2 := testbundle.New(t, 2, b1.Root.Digest, nil)
	b2.Bundle.Items = b2.Bundle.Items[1:] // bundle 2 no longer carries "app" and its layer
	b2.Write(t, sign)
	if _, err := c.Import(ctx, fromDir(b2.Dir), policy); err != nil {
		t.Fatal(err)
	}
	r, err := c.Fetch(ctx, b1.Layer) // a reader is serving bundle 1's layer
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rep, err := c.GC(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if held, _ := c.Has(ctx, b1.Layer.Digest); held || rep.Removed == 0 {
		t.Fatalf("gc kept bundle 1's layer: %+v", rep)
	}
	got, err := io.ReadAll(r)
	if err != nil || digest.FromBytes(got) != b1.Layer.Digest {
		t.Fatalf("the reader lost its blob to gc: %v", err)
	}
}
