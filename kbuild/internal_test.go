package kbuild

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"strings"
	"testing"

	"sigs.k8s.io/kustomize/kyaml/filesys"
)

type entry struct {
	name, link, data string
	typ              byte
}

func tgz(t *testing.T, entries []entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: 0o644, Size: int64(len(e.data))}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			if _, err := tw.Write([]byte(e.data)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// The extraction refuses what could write or read outside the tree.
func TestExtractRefuses(t *testing.T) {
	for _, tc := range []struct {
		name    string
		entries []entry
		want    string
	}{
		{"absolute", []entry{{name: "/etc/passwd", typ: tar.TypeReg, data: "x"}}, "absolute paths are refused"},
		{"dotdot", []entry{{name: "a/../../x", typ: tar.TypeReg, data: "x"}}, "'..' is refused"},
		{"absolute link", []entry{{name: "l", link: "/etc", typ: tar.TypeSymlink}}, "absolute link targets are refused"},
		{"escaping link", []entry{{name: "a/l", link: "../../etc", typ: tar.TypeSymlink}}, "leaves the tree"},
		{"escape through a link", []entry{{name: "a/", typ: tar.TypeDir}, {name: "up", link: "a/..", typ: tar.TypeSymlink}, {name: "out", link: "up/..", typ: tar.TypeSymlink}}, "leaves the tree"},
		{"loop", []entry{{name: "x", link: "y", typ: tar.TypeSymlink}, {name: "y", link: "x", typ: tar.TypeSymlink}}, "loop"},
		{"dangling", []entry{{name: "x", link: "nothing", typ: tar.TypeSymlink}}, "not in the tree"},
		{"hard link", []entry{{name: "f", typ: tar.TypeReg, data: "x"}, {name: "h", link: "f", typ: tar.TypeLink}}, "refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ExtractTarGz(bytes.NewReader(tgz(t, tc.entries)), filesys.MakeFsInMemory(), SourceRoot)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one saying %q", err, tc.want)
			}
		})
	}
}

// Links inside the tree become copies of their targets.
func TestExtractCopiesLinks(t *testing.T) {
	fsys := filesys.MakeFsInMemory()
	err := ExtractTarGz(bytes.NewReader(tgz(t, []entry{
		{name: "base/", typ: tar.TypeDir},
		{name: "base/cm.yaml", typ: tar.TypeReg, data: "cm"},
		{name: "app/", typ: tar.TypeDir},
		{name: "app/cm.yaml", link: "../base/cm.yaml", typ: tar.TypeSymlink},
		{name: "copy", link: "base", typ: tar.TypeSymlink},
	})), fsys, SourceRoot)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/source/app/cm.yaml", "/source/copy/cm.yaml"} {
		b, err := fsys.ReadFile(p)
		if err != nil || string(b) != "cm" {
			t.Errorf("%s = %q, %v; want the link's target", p, b, err)
		}
	}
}

func TestIsRemote(t *testing.T) {
	for ref, want := range map[string]bool{
		"https://github.com/org/repo//x": true,
		"github.com/org/repo/x?ref=v1":   true,
		"git@github.com:org/repo.git":    true,
		"ssh://git@example.com/repo.git": true,
		"example.com/org/repo":           true,
		"../base":                        false,
		"./app":                          false,
		"deployment.yaml":                false,
		"configs/app.yaml":               false,
		"app.v2/deploy.yaml":             true, // only reached when no such local path exists
	} {
		if got := isRemote(ref); got != want {
			t.Errorf("isRemote(%q) = %v, want %v", ref, got, want)
		}
	}
}
