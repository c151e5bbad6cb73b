package bundle_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/internal/testbundle"
)

func blobPath(d digest.Digest) string { return "blobs/sha256/" + d.Encoded() }

// rewriteRoot writes a new root for f made by edit and an index.json naming it, with no checks,
// as a hostile packer could.
func rewriteRoot(t testing.TB, f *fixture, edit func(idx *ocispec.Index)) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(f.dir, blobPath(f.root.Digest)))
	if err != nil {
		t.Fatal(err)
	}
	var idx *ocispec.Index
	if err := json.Unmarshal(raw, &idx); err != nil {
		t.Fatal(err)
	}
	edit(idx)
	raw, err = json.Marshal(idx)
	if err != nil {
		t.Fatal(err)
	}
	root := pushRaw(t, f.layout, ocispec.MediaTypeImageIndex, raw)
	rewriteIndex(t, f, func(m []map[string]any) []map[string]any {
		var out []map[string]any
		for i, e := range m {
			if entryAnnM(e)["org.opencontainers.image.ref.name"] == "bundle" {
				e["digest"], e["size"] = root.Digest, root.Size
				out = append(out, m[i:]...) // the old root's signature no longer applies
				break
			}
		}
		return out
	})
}

// rewriteIndex edits index.json's manifests with no checks.
func rewriteIndex(t testing.TB, f *fixture, edit func([]map[string]any) []map[string]any) {
	t.Helper()
	path := filepath.Join(f.dir, "index.json")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var idx map[string]any
	if err := json.Unmarshal(raw, &idx); err != nil {
		t.Fatal(err)
	}
	var ms []map[string]any
	b, _ := json.Marshal(idx["manifests"])
	json.Unmarshal(b, &ms)
	idx["manifests"] = edit(ms)
	raw, _ = json.Marshal(idx)
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
}

func flip(t testing.TB, path string, at int) {
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

func readDir(opts ...bundle.ReadOption) func(t *testing.T, f *fixture) error {
	return func(t *testing.T, f *fixture) error {
		_, err := bundle.ReadLayout(context.Background(), f.dir, opts...)
		return err
	}
}

func readTarBytes(b []byte, opts ...bundle.ReadOption) error {
	_, err := bundle.ReadTar(context.Background(), bytes.NewReader(b), opts...)
	return err
}

func TestRejects(t *testing.T) {
	type tc struct {
		name  string
		run   func(t *testing.T, f *fixture) error
		check bundle.Check
		label string // the start of the message: what it names
	}
	tarCase := func(edit func(t *testing.T, f *fixture, es []testbundle.Entry) []testbundle.Entry, opts ...bundle.ReadOption) func(t *testing.T, f *fixture) error {
		return func(t *testing.T, f *fixture) error {
			es := edit(t, f, testbundle.SplitTar(t, writeTar(t, f.dir)))
			return readTarBytes(testbundle.JoinTar(t, es), opts...)
		}
	}
	findEntry := func(t *testing.T, es []testbundle.Entry, name string) int {
		for i, e := range es {
			if e.Header.Name == name {
				return i
			}
		}
		t.Fatalf("no tar entry %s", name)
		return -1
	}
	partsCase := func(edit func(t *testing.T, dir string, list *bundle.PartList)) func(t *testing.T, f *fixture) error {
		return func(t *testing.T, f *fixture) error {
			dir := t.TempDir()
			list, err := bundle.Split(context.Background(), bytes.NewReader(writeTar(t, f.dir)), dir, "bundle.tar", 32<<10)
			if err != nil {
				t.Fatal(err)
			}
			edit(t, dir, list)
			_, err = bundle.ReadParts(context.Background(), dirFS(t, dir), bundle.PartListName("bundle.tar"))
			return err
		}
	}
	writeList := func(t *testing.T, dir string, list *bundle.PartList) {
		b, _ := json.Marshal(list)
		if err := os.WriteFile(filepath.Join(dir, bundle.PartListName("bundle.tar")), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	cases := []tc{
		// A layout directory.
		{"dir: flipped byte in a layer", func(t *testing.T, f *fixture) error {
			flip(t, filepath.Join(f.dir, blobPath(f.appLayer.Digest)), 100)
			return readDir()(t, f)
		}, bundle.CheckDigest, "item app: blob " + "sha256:"},
		{"dir: missing layer", func(t *testing.T, f *fixture) error {
			os.Remove(filepath.Join(f.dir, blobPath(f.appLayer.Digest)))
			return readDir()(t, f)
		}, bundle.CheckMissing, "item app"},
		{"dir: flipped byte in the root", func(t *testing.T, f *fixture) error {
			flip(t, filepath.Join(f.dir, blobPath(f.root.Digest)), 10)
			return readDir()(t, f)
		}, bundle.CheckDigest, "root"},
		{"dir: layer longer than declared", func(t *testing.T, f *fixture) error {
			p := filepath.Join(f.dir, blobPath(f.appLayer.Digest))
			b, _ := os.ReadFile(p)
			os.WriteFile(p, append(b, 0), 0o644)
			return readDir()(t, f)
		}, bundle.CheckSize, "item app"},
		{"dir: layer is a symlink", func(t *testing.T, f *fixture) error {
			p := filepath.Join(f.dir, blobPath(f.appLayer.Digest))
			b, _ := os.ReadFile(p)
			outside := filepath.Join(t.TempDir(), "outside")
			os.WriteFile(outside, b, 0o644)
			os.Remove(p)
			if err := os.Symlink(outside, p); err != nil {
				t.Fatal(err)
			}
			return readDir()(t, f)
		}, bundle.CheckPath, "item app"},
		{"dir: no index.json", func(t *testing.T, f *fixture) error {
			os.Remove(filepath.Join(f.dir, "index.json"))
			return readDir()(t, f)
		}, bundle.CheckMissing, "index.json"},
		{"dir: index.json names no root", func(t *testing.T, f *fixture) error {
			rewriteIndex(t, f, func(m []map[string]any) []map[string]any {
				for _, e := range m {
					delete(e, "annotations")
				}
				return m
			})
			return readDir()(t, f)
		}, bundle.CheckMissing, "index.json"},
		{"dir: index.json's item disagrees with the root", func(t *testing.T, f *fixture) error {
			rewriteIndex(t, f, func(m []map[string]any) []map[string]any {
				for _, e := range m {
					if entryAnnM(e)["org.opencontainers.image.ref.name"] == "app" {
						e["digest"] = string(f.images["multi"])
					}
				}
				return m
			})
			return readDir()(t, f)
		}, bundle.CheckFormat, "item app"},
		{"dir: root with an unknown dev.ferry annotation", func(t *testing.T, f *fixture) error {
			rewriteRoot(t, f, func(idx *ocispec.Index) { idx.Annotations["dev.ferry.bundle.trust"] = "all" })
			return readDir()(t, f)
		}, bundle.CheckFormat, "root"},
		{"dir: root entries out of order", func(t *testing.T, f *fixture) error {
			rewriteRoot(t, f, func(idx *ocispec.Index) {
				es := idx.Manifests
				es[0], es[len(es)-1] = es[len(es)-1], es[0]
			})
			return readDir()(t, f)
		}, bundle.CheckFormat, "root"},
		{"dir: root with sequence 0", func(t *testing.T, f *fixture) error {
			rewriteRoot(t, f, func(idx *ocispec.Index) { idx.Annotations["dev.ferry.bundle.sequence"] = "0" })
			return readDir()(t, f)
		}, bundle.CheckFormat, "root"},
		{"dir: root with an item name that is a path", func(t *testing.T, f *fixture) error {
			rewriteRoot(t, f, func(idx *ocispec.Index) {
				for _, e := range idx.Manifests {
					if e.Annotations["dev.ferry.item.name"] == "app" {
						e.Annotations["dev.ferry.item.name"] = "../../etc"
					}
				}
			})
			return readDir()(t, f)
		}, bundle.CheckFormat, "root"},
		{"dir: image manifest declared as an index (confusion)", func(t *testing.T, f *fixture) error {
			rewriteRoot(t, f, func(idx *ocispec.Index) {
				for i, e := range idx.Manifests {
					if e.Annotations["dev.ferry.item.name"] == "app" && e.Annotations["dev.ferry.item.kind"] == "image" {
						idx.Manifests[i].MediaType = ocispec.MediaTypeImageIndex
					}
				}
			})
			rewriteIndex(t, f, func(m []map[string]any) []map[string]any {
				for _, e := range m {
					if entryAnnM(e)["org.opencontainers.image.ref.name"] == "app" {
						e["mediaType"] = ocispec.MediaTypeImageIndex
					}
				}
				return m
			})
			return readDir()(t, f)
		}, bundle.CheckMediaType, "item app"},
		{"dir: referrer of a manifest not in the bundle", func(t *testing.T, f *fixture) error {
			rewriteRoot(t, f, func(idx *ocispec.Index) {
				for _, e := range idx.Manifests {
					if e.Annotations["dev.ferry.item.kind"] == "referrer" {
						e.Annotations["dev.ferry.referrer.subject"] = string(digest.FromString("elsewhere"))
					}
				}
			})
			return readDir()(t, f)
		}, bundle.CheckMissing, "item app"},
		{"dir: delta with no base held", func(t *testing.T, f *fixture) error {
			rewriteRoot(t, f, func(idx *ocispec.Index) {
				idx.Annotations["dev.ferry.bundle.base"] = string(digest.FromString("base"))
			})
			return readDir()(t, f)
		}, bundle.CheckMissing, "root"},
		{"dir: blob over the size limit", readDir(bundle.WithLimits(bundle.Limits{MaxBlobSize: 4 << 10})), bundle.CheckLimit, "item"},
		{"dir: more blobs than the limit", readDir(bundle.WithLimits(bundle.Limits{MaxBlobs: 5})), bundle.CheckLimit, ""},
		{"dir: total over the limit", readDir(bundle.WithLimits(bundle.Limits{MaxTotalSize: 100 << 10})), bundle.CheckLimit, ""},
		{"dir: manifest over the limit", readDir(bundle.WithLimits(bundle.Limits{MaxManifestSize: 512})), bundle.CheckLimit, ""},

		// A tar.
		{"tar: flipped byte in a layer", tarCase(func(t *testing.T, f *fixture, es []testbundle.Entry) []testbundle.Entry {
			es[findEntry(t, es, blobPath(f.appLayer.Digest))].Data[7] ^= 0x80
			return es
		}), bundle.CheckDigest, "item app"},
		{"tar: layer one byte short", tarCase(func(t *testing.T, f *fixture, es []testbundle.Entry) []testbundle.Entry {
			i := findEntry(t, es, blobPath(f.appLayer.Digest))
			es[i].Data = es[i].Data[1:]
			return es
		}), bundle.CheckSize, "item app"},
		{"tar: layer missing", tarCase(func(t *testing.T, f *fixture, es []testbundle.Entry) []testbundle.Entry {
			i := findEntry(t, es, blobPath(f.appLayer.Digest))
			return append(es[:i], es[i+1:]...)
		}), bundle.CheckTruncated, "item app"},
		{"tar: truncated mid-blob", func(t *testing.T, f *fixture) error {
			b := writeTar(t, f.dir)
			return readTarBytes(b[:len(b)/2])
		}, bundle.CheckTruncated, ""},
		{"tar: truncated inside the last blob", func(t *testing.T, f *fixture) error {
			b := writeTar(t, f.dir)
			es := testbundle.SplitTar(t, b)
			last := es[len(es)-1].Data
			at := bytes.LastIndex(b, last)
			return readTarBytes(b[:at+len(last)/2])
		}, bundle.CheckTruncated, ""},
		{"tar: truncated at an entry boundary", func(t *testing.T, f *fixture) error {
			es := testbundle.SplitTar(t, writeTar(t, f.dir))
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			for _, e := range es[:len(es)-3] {
				h := e.Header
				tw.WriteHeader(&h)
				tw.Write(e.Data)
			}
			tw.Flush() // no end-of-archive blocks: the stream just stops
			return readTarBytes(buf.Bytes())
		}, bundle.CheckTruncated, ""},
		{"tar: plain tar -c order", tarCase(func(t *testing.T, f *fixture, es []testbundle.Entry) []testbundle.Entry {
			sort.Slice(es, func(i, j int) bool { return es[i].Header.Name < es[j].Header.Name })
			return es
		}), bundle.CheckOrder, ""},
		{"tar: blobs before their parents", tarCase(func(t *testing.T, f *fixture, es []testbundle.Entry) []testbundle.Entry {
			// keep oci-layout, index.json and the folders first; reverse the blobs
			head, blobs := es[:4], es[4:]
			for i, j := 0, len(blobs)-1; i < j; i, j = i+1, j-1 {
				blobs[i], blobs[j] = blobs[j], blobs[i]
			}
			return append(head, blobs...)
		}), bundle.CheckUnexpect, ""},
		{"tar: blob twice", tarCase(func(t *testing.T, f *fixture, es []testbundle.Entry) []testbundle.Entry {
			i := findEntry(t, es, blobPath(f.appLayer.Digest))
			return append(es[:i+1], es[i:]...)
		}), bundle.CheckUnexpect, "item app"},
		{"tar: unreferenced extra blob", tarCase(func(t *testing.T, f *fixture, es []testbundle.Entry) []testbundle.Entry {
			extra := []byte("not part of the bundle")
			return append(es, testbundle.Entry{Header: tar.Header{Typeflag: tar.TypeReg, Name: blobPath(digest.FromBytes(extra)), Mode: 0o644}, Data: extra})
		}), bundle.CheckUnexpect, ""},
		{"tar: symlink entry", tarCase(func(t *testing.T, f *fixture, es []testbundle.Entry) []testbundle.Entry {
			i := findEntry(t, es, blobPath(f.appLayer.Digest))
			es[i] = testbundle.Entry{Header: tar.Header{Typeflag: tar.TypeSymlink, Name: es[i].Header.Name, Linkname: "/etc/shadow"}, Data: nil}
			return es
		}), bundle.CheckPath, ""},
		{"tar: hard link entry", tarCase(func(t *testing.T, f *fixture, es []testbundle.Entry) []testbundle.Entry {
			i := findEntry(t, es, blobPath(f.appLayer.Digest))
			es[i] = testbundle.Entry{Header: tar.Header{Typeflag: tar.TypeLink, Name: es[i].Header.Name, Linkname: "index.json"}, Data: nil}
			return es
		}), bundle.CheckPath, ""},
		{"tar: device entry", tarCase(func(t *testing.T, f *fixture, es []testbundle.Entry) []testbundle.Entry {
			return append(es[:4], append([]testbundle.Entry{{Header: tar.Header{Typeflag: tar.TypeChar, Name: "blobs/sha256/dev", Devmajor: 1, Devminor: 3}, Data: nil}}, es[4:]...)...)
		}), bundle.CheckPath, ""},
		{"tar: path traversal", tarCase(func(t *testing.T, f *fixture, es []testbundle.Entry) []testbundle.Entry {
			return append(es[:4], append([]testbundle.Entry{{Header: tar.Header{Typeflag: tar.TypeReg, Name: "blobs/sha256/../../../etc/cron.d/x", Mode: 0o644}, Data: []byte("x")}}, es[4:]...)...)
		}), bundle.CheckPath, ""},
		{"tar: absolute path", tarCase(func(t *testing.T, f *fixture, es []testbundle.Entry) []testbundle.Entry {
			return append(es[:4], append([]testbundle.Entry{{Header: tar.Header{Typeflag: tar.TypeReg, Name: "/etc/passwd", Mode: 0o644}, Data: []byte("x")}}, es[4:]...)...)
		}), bundle.CheckPath, ""},
		{"tar: upper-case digest name", tarCase(func(t *testing.T, f *fixture, es []testbundle.Entry) []testbundle.Entry {
			i := findEntry(t, es, blobPath(f.appLayer.Digest))
			es[i].Header.Name = strings.ToUpper(es[i].Header.Name)
			return es
		}), bundle.CheckPath, ""},
		{"tar: index.json first", tarCase(func(t *testing.T, f *fixture, es []testbundle.Entry) []testbundle.Entry {
			es[0], es[1] = es[1], es[0]
			return es
		}), bundle.CheckOrder, "index.json"},
		{"tar: too many entries", tarCase(func(t *testing.T, f *fixture, es []testbundle.Entry) []testbundle.Entry { return es },
			bundle.WithLimits(bundle.Limits{MaxBlobs: 6})), bundle.CheckLimit, ""},

		// Parts.
		{"parts: missing part", partsCase(func(t *testing.T, dir string, list *bundle.PartList) {
			os.Remove(filepath.Join(dir, list.Parts[1].Name))
		}), bundle.CheckPart, "part bundle.tar.part-00002"},
		{"parts: flipped byte in a part", partsCase(func(t *testing.T, dir string, list *bundle.PartList) {
			flip(t, filepath.Join(dir, list.Parts[2].Name), 999)
		}), bundle.CheckPart, "part bundle.tar.part-00003"},
		{"parts: truncated part", partsCase(func(t *testing.T, dir string, list *bundle.PartList) {
			os.Truncate(filepath.Join(dir, list.Parts[0].Name), 100)
		}), bundle.CheckPart, "part bundle.tar.part-00001"},
		{"parts: duplicate part", partsCase(func(t *testing.T, dir string, list *bundle.PartList) {
			list.Parts[1] = list.Parts[0]
			writeList(t, dir, list)
		}), bundle.CheckPart, "part bundle.tar.part-00001"},
		// Each part matches its (swapped) entry, so only the joined digest at the very end
		// could name the list; the read of a refused bundle stops at the end of the part it is
		// in, so the refusal is the tar's own.
		{"parts: parts swapped", partsCase(func(t *testing.T, dir string, list *bundle.PartList) {
			list.Parts[0], list.Parts[1] = list.Parts[1], list.Parts[0]
			writeList(t, dir, list)
		}), bundle.CheckTruncated, "tar entry 1"},
		{"parts: part name with a path", partsCase(func(t *testing.T, dir string, list *bundle.PartList) {
			list.Parts[0].Name = "../bundle.tar.part-00001"
			writeList(t, dir, list)
		}), bundle.CheckPath, "part ../bundle.tar.part-00001"},
		{"parts: missing part list", partsCase(func(t *testing.T, dir string, list *bundle.PartList) {
			os.Remove(filepath.Join(dir, bundle.PartListName("bundle.tar")))
		}), bundle.CheckMissing, "part bundle.tar.parts.json"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, 3)
			err := c.run(t, f)
			if err == nil {
				t.Fatal("accepted")
			}
			e, ok := bundle.AsError(err)
			if !ok {
				t.Fatalf("not a bundle.Error: %v", err)
			}
			if e.Check != c.check {
				t.Fatalf("check %q, want %q: %v", e.Check, c.check, err)
			}
			if !strings.HasPrefix(err.Error(), c.label) {
				t.Fatalf("message %q does not start with %q", err, c.label)
			}
			if !strings.Contains(err.Error(), "(check: "+string(c.check)+")") || !strings.Contains(err.Error(), "fix: ") {
				t.Fatalf("message %q does not name the check and a fix", err)
			}
			t.Logf("rejected: %v", err)
		})
	}
	t.Logf("%d damaged bundles rejected", len(cases))
}

func entryAnnM(e map[string]any) map[string]any {
	a, _ := e["annotations"].(map[string]any)
	return a
}
