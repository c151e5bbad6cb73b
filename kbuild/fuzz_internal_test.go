package kbuild

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"os"
	"strings"
	"testing"

	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// FuzzExtractTarGz: extracting a source archive never panics, and what it accepts is written
// under the root only, with no name climbing out. The fuzzed bytes are the tar stream, gzipped
// here, so mutations reach the tar reader and the link resolution rather than gzip's checksum.
func FuzzExtractTarGz(f *testing.F) {
	for _, entries := range [][]entry{
		{{name: "app/", typ: tar.TypeDir}, {name: "app/kustomization.yaml", typ: tar.TypeReg, data: "resources:\n  - cm.yaml\n"}, {name: "app/cm.yaml", typ: tar.TypeReg, data: "kind: ConfigMap\n"}},
		{{name: "base/", typ: tar.TypeDir}, {name: "base/cm.yaml", typ: tar.TypeReg, data: "cm"}, {name: "app/cm.yaml", link: "../base/cm.yaml", typ: tar.TypeSymlink}, {name: "copy", link: "base", typ: tar.TypeSymlink}},
		{{name: "a/", typ: tar.TypeDir}, {name: "up", link: "a/..", typ: tar.TypeSymlink}, {name: "out", link: "up/..", typ: tar.TypeSymlink}},
		{{name: "x", link: "y", typ: tar.TypeSymlink}, {name: "y", link: "x", typ: tar.TypeSymlink}},
		{{name: "d0/f", typ: tar.TypeReg, data: "f"}, {name: "d1/a", link: "../d0", typ: tar.TypeSymlink}, {name: "d1/b", link: "../d0", typ: tar.TypeSymlink}, {name: "d2/a", link: "../d1", typ: tar.TypeSymlink}, {name: "d2/b", link: "../d1", typ: tar.TypeSymlink}},
		{{name: "a/../../x", typ: tar.TypeReg, data: "x"}},
	} {
		f.Add(tarOf(f, entries))
	}
	const root = "/src"
	f.Fuzz(func(t *testing.T, data []byte) {
		var gz bytes.Buffer
		zw := gzip.NewWriter(&gz)
		zw.Write(data)
		zw.Close()
		fsys := filesys.MakeFsInMemory()
		if err := ExtractTarGz(&gz, fsys, root); err != nil {
			return
		}
		if err := fsys.Walk("/", func(p string, _ os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			if p != "/" && p != root && !strings.HasPrefix(p, root+"/") {
				t.Fatalf("accepted an archive that wrote %s, outside %s", p, root)
			}
			for _, part := range strings.Split(p, "/") {
				if part == ".." {
					t.Fatalf("accepted an archive that wrote %s", p)
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	})
}

// tarOf returns entries as a tar stream (not gzipped).
func tarOf(tb testing.TB, entries []entry) []byte {
	tb.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: 0o644, Size: int64(len(e.data))}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			tb.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			if _, err := tw.Write([]byte(e.data)); err != nil {
				tb.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}
