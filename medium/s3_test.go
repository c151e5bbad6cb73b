package medium_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/internal/testenv"
	"github.com/ferry-gitops/ferry/medium"
)

const tarName = "bundle.tar"

// newBucket starts MinIO for the test and returns a client and a fresh bucket.
func newBucket(t *testing.T) (*minio.Client, string) {
	t.Helper()
	m := testenv.NewMinIO(t)
	bucket, err := m.MakeBucket(context.Background(), "ferry-bundles")
	if err != nil {
		t.Fatal(err)
	}
	c, err := m.Client()
	if err != nil {
		t.Fatal(err)
	}
	return c, bucket
}

func getObject(t *testing.T, c *minio.Client, bucket, key string) []byte {
	t.Helper()
	obj, err := c.GetObject(context.Background(), bucket, key, minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	data, err := io.ReadAll(obj)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	return data
}

func putObject(t *testing.T, c *minio.Client, bucket, key string, data []byte) {
	t.Helper()
	if _, err := c.PutObject(context.Background(), bucket, key, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
}

// objectKeys lists every key under prefix.
func objectKeys(t *testing.T, c *minio.Client, bucket, prefix string) []string {
	t.Helper()
	var keys []string
	for obj := range c.ListObjects(context.Background(), bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if obj.Err != nil {
			t.Fatal(obj.Err)
		}
		keys = append(keys, obj.Key)
	}
	return keys
}

// writeS3 writes the bundle in dir to the bucket as parts of partSize bytes named after name.
func writeS3(ctx context.Context, c *minio.Client, dir, bucket, prefix, name string, partSize int64) (*bundle.PartList, error) {
	w, err := medium.Write(ctx, medium.S3(bucket, prefix, name).Split(partSize), dir, medium.WithS3Client(c))
	if err != nil {
		return nil, err
	}
	return w.Parts, nil
}

// listS3 returns the names of the part lists medium.List finds under prefix.
func listS3(ctx context.Context, c *minio.Client, bucket, prefix string) ([]string, error) {
	cands, err := medium.List(ctx, medium.S3Prefix(bucket, prefix), medium.WithS3Client(c))
	if err != nil {
		return nil, err
	}
	names := []string{}
	for _, cand := range cands {
		names = append(names, cand.Name)
	}
	return names, nil
}

// A bundle written to a bucket in parts reads back, verified, with the same root.
func TestS3RoundTrip(t *testing.T) {
	c, bucket := newBucket(t)
	tb := newTestBundle(t, 1)
	ctx := context.Background()
	for _, tc := range []struct {
		name      string
		prefix    string
		keyPrefix string // where the objects land
		partSize  int64
		minParts  int
		maxParts  int
	}{
		{"several parts under a prefix", "sites/edge-1", "sites/edge-1/", 8 << 10, 4, 100},
		{"prefix with slashes around it", "/sites/edge-2/", "sites/edge-2/", 8 << 10, 4, 100},
		{"one part at the top of the bucket", "", "", 1 << 20, 1, 1},
		{"one part streamed in pieces", "streamed", "streamed/", 32 << 20, 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			list, err := writeS3(ctx, c, tb.dir, bucket, tc.prefix, tarName, tc.partSize)
			if err != nil {
				t.Fatal(err)
			}
			if n := len(list.Parts); n < tc.minParts || n > tc.maxParts {
				t.Fatalf("%d parts, want %d to %d", n, tc.minParts, tc.maxParts)
			}
			for _, p := range list.Parts {
				info, err := c.StatObject(ctx, bucket, tc.keyPrefix+p.Name, minio.StatObjectOptions{})
				if err != nil {
					t.Fatalf("part %s: %v", p.Name, err)
				}
				if info.Size != p.Size {
					t.Fatalf("part %s: object of %d bytes, list says %d", p.Name, info.Size, p.Size)
				}
			}
			names, err := listS3(ctx, c, bucket, tc.prefix)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(names, []string{tarName + ".parts.json"}) {
				t.Fatalf("List = %q", names)
			}
			res, err := bundle.ReadParts(ctx, medium.S3FS(ctx, c, bucket, tc.prefix), names[0])
			if err != nil {
				t.Fatal(err)
			}
			if res.Root.Digest != tb.root.Digest {
				t.Fatalf("read root %s, wrote %s", res.Root.Digest, tb.root.Digest)
			}
			if len(res.Attachments) != 2 || len(res.Bundle.Items) != 2 {
				t.Fatalf("read %d attachments and %d items, want 2 and 2", len(res.Attachments), len(res.Bundle.Items))
			}
			t.Logf("s3://%s/%s%s: parts %d, %d bytes; read back %d blobs, root %s", bucket, tc.keyPrefix, tarName, len(list.Parts), list.Size, res.Blobs, res.Root.Digest)
		})
	}
}

// The part list and the parts in the bucket are byte for byte what bundle.Split writes for
// the same tar.
func TestS3MatchesSplit(t *testing.T) {
	c, bucket := newBucket(t)
	tb := newTestBundle(t, 2)
	ctx := context.Background()
	var tarBytes bytes.Buffer
	if _, err := bundle.WriteTar(ctx, &tarBytes, tb.dir); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		partSize int64
	}{
		{"8 KiB parts", 8 << 10},
		{"odd part size", 12345},
		{"a part size that divides the tar", int64(tarBytes.Len()) / 4},
		{"one streamed part", 32 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			want, err := bundle.Split(ctx, bytes.NewReader(tarBytes.Bytes()), dir, tarName, tc.partSize)
			if err != nil {
				t.Fatal(err)
			}
			prefix := "split-" + strings.ReplaceAll(tc.name, " ", "-")
			got, err := writeS3(ctx, c, tb.dir, bucket, prefix, tarName, tc.partSize)
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Parts) != len(want.Parts) || got.Digest != want.Digest || got.Size != want.Size {
				t.Fatalf("Write returned %d parts, %s, %d bytes; Split %d parts, %s, %d bytes",
					len(got.Parts), got.Digest, got.Size, len(want.Parts), want.Digest, want.Size)
			}
			for _, name := range append([]string{tarName + ".parts.json"}, partNames(want)...) {
				local, err := os.ReadFile(filepath.Join(dir, name))
				if err != nil {
					t.Fatal(err)
				}
				if remote := getObject(t, c, bucket, prefix+"/"+name); !bytes.Equal(remote, local) {
					t.Fatalf("%s differs from bundle.Split's (%d and %d bytes):\n%s\n---\n%.300s", name, len(remote), len(local), remote, local)
				}
			}
			t.Logf("%s: part list and parts (%d) equal bundle.Split's byte for byte", prefix, len(want.Parts))
		})
	}
}

func partNames(l *bundle.PartList) []string {
	var names []string
	for _, p := range l.Parts {
		names = append(names, p.Name)
	}
	return names
}

// A part missing or altered in the bucket is rejected by bundle.ReadParts with an error that
// names the part.
func TestS3DamagedPartRejected(t *testing.T) {
	c, bucket := newBucket(t)
	tb := newTestBundle(t, 3)
	ctx := context.Background()
	const part = tarName + ".part-00003"
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, key string)
		want   []string // in the message
	}{
		{"missing part", func(t *testing.T, key string) {
			if err := c.RemoveObject(ctx, bucket, key, minio.RemoveObjectOptions{}); err != nil {
				t.Fatal(err)
			}
		}, []string{"part " + part, "missing", "s3://" + bucket + "/missing-part/" + part}},
		{"flipped byte", func(t *testing.T, key string) {
			data := getObject(t, c, bucket, key)
			data[len(data)/2] ^= 0x01
			putObject(t, c, bucket, key, data)
		}, []string{"part " + part, "hashes to"}},
		{"truncated part", func(t *testing.T, key string) {
			data := getObject(t, c, bucket, key)
			putObject(t, c, bucket, key, data[:len(data)-1])
		}, []string{"part " + part, "truncated"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prefix := strings.ReplaceAll(tc.name, " ", "-")
			if _, err := writeS3(ctx, c, tb.dir, bucket, prefix, tarName, 8<<10); err != nil {
				t.Fatal(err)
			}
			tc.damage(t, prefix+"/"+part)
			_, err := bundle.ReadParts(ctx, medium.S3FS(ctx, c, bucket, prefix), tarName+".parts.json")
			if err == nil {
				t.Fatal("ReadParts accepted a damaged part")
			}
			e, ok := bundle.AsError(err)
			if !ok || e.Check != bundle.CheckPart || e.Item != part {
				t.Fatalf("want a bundle.Error for %s with check %q, got %#v: %v", part, bundle.CheckPart, e, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error does not say %q: %v", w, err)
				}
			}
			t.Logf("rejected: %v", err)
		})
	}
}

// S3FS opens only plain names under its prefix, reports missing objects as fs.ErrNotExist, and
// gives the object's size.
func TestS3FSOpen(t *testing.T) {
	c, bucket := newBucket(t)
	ctx := context.Background()
	putObject(t, c, bucket, "media/a/b.bin", bytes.Repeat([]byte("ferry"), 1000))
	putObject(t, c, bucket, "secret", []byte("outside the prefix"))
	fsys := medium.S3FS(ctx, c, bucket, "media")
	for _, tc := range []struct {
		name    string
		wantErr error // nil: opens
	}{
		{"a/b.bin", nil},
		{"a/missing.bin", fs.ErrNotExist},
		{"a", fs.ErrNotExist},
		{"../secret", fs.ErrInvalid},
		{"a/../../secret", fs.ErrInvalid},
		{"a..b", fs.ErrInvalid},
		{"/media/a/b.bin", fs.ErrInvalid},
		{"a//b.bin", fs.ErrInvalid},
		{".", fs.ErrInvalid},
		{"", fs.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := fsys.Open(tc.name)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || !strings.HasPrefix(err.Error(), "s3://"+bucket+"/media") {
					t.Fatalf("Open(%q) = %v, want %v naming s3://%s/media", tc.name, err, tc.wantErr, bucket)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			fi, err := f.Stat()
			if err != nil {
				t.Fatal(err)
			}
			data, err := io.ReadAll(f)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Name() != "b.bin" || fi.Size() != 5000 || len(data) != 5000 || fi.IsDir() {
				t.Fatalf("Stat: %s, %d bytes, dir %v; read %d bytes", fi.Name(), fi.Size(), fi.IsDir(), len(data))
			}
		})
	}
}

// A bundle that is not complete is not written: no part list, and the parts uploaded before the
// damage was found are removed, as is the part list of the bundle it was to replace.
func TestWriteS3RefusesIncompleteBundle(t *testing.T) {
	c, bucket := newBucket(t)
	ctx := context.Background()
	tb := newTestBundle(t, 4)
	if _, err := writeS3(ctx, c, tb.dir, bucket, "site", tarName, 8<<10); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(blobPath(tb.dir, tb.layer.Digest)); err != nil {
		t.Fatal(err)
	}
	_, err := writeS3(ctx, c, tb.dir, bucket, "site", tarName, 8<<10)
	if err == nil {
		t.Fatal("Write wrote an incomplete bundle")
	}
	e, ok := bundle.AsError(err)
	if !ok || e.Check != bundle.CheckMissing || e.Blob != tb.layer.Digest {
		t.Fatalf("want a bundle.Error for the missing blob %s, got %v", tb.layer.Digest, err)
	}
	if !strings.HasPrefix(err.Error(), "s3://"+bucket+"/site/"+tarName+".part-") {
		t.Fatalf("error does not name the part being written: %v", err)
	}
	if keys := objectKeys(t, c, bucket, "site/"); len(keys) != 0 {
		t.Fatalf("objects left behind: %q", keys)
	}
	t.Logf("refused: %v", err)
}

// List lists the part lists directly under a prefix, sorted.
func TestListS3Bundles(t *testing.T) {
	c, bucket := newBucket(t)
	ctx := context.Background()
	for _, key := range []string{
		"sites/b.tar.parts.json", "sites/a.tar.parts.json", "sites/a.tar.part-00001",
		"sites/old/c.tar.parts.json", "sites/.parts.json", "top.tar.parts.json", "notes.txt",
	} {
		putObject(t, c, bucket, key, []byte("{}"))
	}
	for _, tc := range []struct {
		prefix string
		want   []string
	}{
		{"sites", []string{"a.tar.parts.json", "b.tar.parts.json"}},
		{"sites/", []string{"a.tar.parts.json", "b.tar.parts.json"}},
		{"sites/old", []string{"c.tar.parts.json"}},
		{"", []string{"top.tar.parts.json"}},
		{".", []string{"top.tar.parts.json"}},
		{"nothing-here", []string{}},
	} {
		t.Run("prefix "+tc.prefix, func(t *testing.T) {
			got, err := listS3(ctx, c, bucket, tc.prefix)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("List(%q) = %q, want %q", tc.prefix, got, tc.want)
			}
		})
	}
	// A listing longer than its bound is refused, naming the bucket and the bound.
	if _, err := medium.List(ctx, medium.S3Prefix(bucket, "sites"), medium.WithS3Client(c), medium.WithMaxListed(3)); err == nil || !strings.Contains(err.Error(), "more than 3 objects") || !strings.Contains(err.Error(), "s3://"+bucket) {
		t.Fatalf("List of 5 objects bounded at 3: %v, want an error naming the bucket and the bound", err)
	}
	if _, err := listS3(ctx, c, bucket, "a/../b"); err == nil || !strings.Contains(err.Error(), "s3://"+bucket) {
		t.Fatalf("List with prefix a/../b: %v, want an error naming the bucket", err)
	}
}

// Writing a bundle over one of the same name leaves exactly the new part list and parts.
func TestWriteS3ReplacesBundle(t *testing.T) {
	c, bucket := newBucket(t)
	ctx := context.Background()
	older, newer := newTestBundle(t, 5), newTestBundle(t, 6)
	if _, err := writeS3(ctx, c, older.dir, bucket, "site", tarName, 8<<10); err != nil {
		t.Fatal(err)
	}
	list, err := writeS3(ctx, c, newer.dir, bucket, "site", tarName, 20<<10)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"site/" + tarName + ".parts.json"}
	for _, name := range partNames(list) {
		want = append(want, "site/"+name)
	}
	slices.Sort(want)
	if got := objectKeys(t, c, bucket, "site/"); !slices.Equal(got, want) {
		t.Fatalf("objects %q, want %q", got, want)
	}
	res, err := bundle.ReadParts(ctx, medium.S3FS(ctx, c, bucket, "site"), tarName+".parts.json")
	if err != nil {
		t.Fatal(err)
	}
	if res.Root.Digest != newer.root.Digest || res.Bundle.Sequence != 7 {
		t.Fatalf("read root %s (sequence %d), want the newer %s", res.Root.Digest, res.Bundle.Sequence, newer.root.Digest)
	}
}
