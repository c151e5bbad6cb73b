package reconcile

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"strings"
	"testing"

	kustomizev1 "github.com/fluxcd/kustomize-controller/api/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

func ks(deps map[string][]string) []*kustomizev1.Kustomization {
	var out []*kustomizev1.Kustomization
	for name, ds := range deps {
		k := &kustomizev1.Kustomization{}
		k.Namespace, k.Name = "ns", name
		for _, d := range ds {
			k.Spec.DependsOn = append(k.Spec.DependsOn, kustomizev1.DependencyReference{Name: d})
		}
		out = append(out, k)
	}
	return out
}

func TestPlan(t *testing.T) {
	for _, tc := range []struct {
		name   string
		deps   map[string][]string
		order  string
		cycles map[string]string
	}{
		{"reverse names", map[string][]string{"z": nil, "y": {"z"}, "x": {"y"}}, "z y x", nil},
		{"independent by name", map[string][]string{"b": nil, "a": nil, "c": nil}, "a b c", nil},
		{"diamond", map[string][]string{"top": {"l", "r"}, "l": {"base"}, "r": {"base"}, "base": nil}, "base l r top", nil},
		{"missing dependency ignored", map[string][]string{"a": {"gone"}}, "a", nil},
		{"two-cycle", map[string][]string{"kx": {"ky"}, "ky": {"kx"}, "kz": {"kx"}}, "kx ky kz",
			map[string]string{"kx": "ns/kx -> ns/ky -> ns/kx", "ky": "ns/kx -> ns/ky -> ns/kx"}},
		{"self", map[string][]string{"s": {"s"}}, "s", map[string]string{"s": "ns/s -> ns/s"}},
		{"three-cycle", map[string][]string{"a": {"c"}, "b": {"a"}, "c": {"b"}}, "a b c",
			map[string]string{"a": "ns/a -> ns/c -> ns/b -> ns/a", "b": "ns/a -> ns/c -> ns/b -> ns/a", "c": "ns/a -> ns/c -> ns/b -> ns/a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			order, cycles := plan(ks(tc.deps))
			var names []string
			for _, k := range order {
				names = append(names, k.Name)
			}
			if got := strings.Join(names, " "); got != tc.order {
				t.Errorf("order %q, want %q", got, tc.order)
			}
			if len(cycles) != len(tc.cycles) {
				t.Fatalf("cycles %v, want %v", cycles, tc.cycles)
			}
			for name, want := range tc.cycles {
				if got := cycles[types.NamespacedName{Namespace: "ns", Name: name}]; got != want {
					t.Errorf("cycle of %s = %q, want %q", name, got, want)
				}
			}
		})
	}
}

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
			err := extractTarGz(bytes.NewReader(tgz(t, tc.entries)), filesys.MakeFsInMemory(), srcRoot)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one saying %q", err, tc.want)
			}
		})
	}
}

// Links inside the tree become copies of their targets.
func TestExtractCopiesLinks(t *testing.T) {
	fsys := filesys.MakeFsInMemory()
	err := extractTarGz(bytes.NewReader(tgz(t, []entry{
		{name: "base/", typ: tar.TypeDir},
		{name: "base/cm.yaml", typ: tar.TypeReg, data: "cm"},
		{name: "app/", typ: tar.TypeDir},
		{name: "app/cm.yaml", link: "../base/cm.yaml", typ: tar.TypeSymlink},
		{name: "copy", link: "base", typ: tar.TypeSymlink},
	})), fsys, srcRoot)
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
