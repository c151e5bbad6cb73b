package kbuild_test

import (
	"errors"
	"os"
	"path"
	"reflect"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/ferry-gitops/ferry/kbuild"
)

// monorepo is a source tree as flux2-kustomize-helm-example lays it out, with a few extras.
var monorepo = map[string]string{
	"infrastructure/controllers/kustomization.yaml": "resources: [cert-manager.yaml]\n",
	"infrastructure/controllers/cert-manager.yaml":  "cm",
	"infrastructure/configs/issuer.yaml":            "issuer",
	"apps/base/podinfo/kustomization.yaml":          "resources: [release.yaml]\n",
	"apps/base/podinfo/release.yaml":                "release",
	"apps/base/README.md":                           "readme",
	"apps/production/kustomization.yaml":            "resources: [../base/podinfo]\n",
	"apps/production/patch.yaml":                    "patch",
	"apps/production/.hidden":                       "hidden",
	"deploy/a.yaml":                                 "a",
	"deploy/b.yaml":                                 "b",
	"deploy/c.json":                                 "c",
	"deploy/sub/d.yaml":                             "d",
	"top.yaml":                                      "top",
}

// sourceFS writes each alias's files under /src/<alias>.
func sourceFS(t *testing.T, srcs map[string]map[string]string) (filesys.FileSystem, map[string]string) {
	t.Helper()
	fsys := filesys.MakeFsInMemory()
	roots := map[string]string{}
	for alias, files := range srcs {
		root := "/src/" + alias
		roots[alias] = root
		if err := fsys.MkdirAll(root); err != nil {
			t.Fatal(err)
		}
		for name, data := range files {
			p := path.Join(root, name)
			if err := fsys.MkdirAll(path.Dir(p)); err != nil {
				t.Fatal(err)
			}
			if err := fsys.WriteFile(p, []byte(data)); err != nil {
				t.Fatal(err)
			}
		}
	}
	return fsys, roots
}

func filesOf(t *testing.T, fsys filesys.FileSystem, root string) map[string]string {
	t.Helper()
	files, err := kbuild.Files(fsys, root)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for k, v := range files {
		out[k] = string(v)
	}
	return out
}

func TestCopyArtifact(t *testing.T) {
	for _, tc := range []struct {
		name string
		ops  []kbuild.CopyOp
		want map[string]string
		err  string
	}{
		{
			name: "recursive contents keep their paths below the folder",
			ops:  []kbuild.CopyOp{{From: "@monorepo/infrastructure/**", To: "@artifact/"}},
			want: map[string]string{
				"controllers/kustomization.yaml": "resources: [cert-manager.yaml]\n", "controllers/cert-manager.yaml": "cm",
				"configs/issuer.yaml": "issuer",
			},
		},
		{
			name: "two folders into two",
			ops: []kbuild.CopyOp{
				{From: "@monorepo/apps/base/**", To: "@artifact/base/"},
				{From: "@monorepo/apps/production/**", To: "@artifact/production/"},
			},
			want: map[string]string{
				"base/podinfo/kustomization.yaml": "resources: [release.yaml]\n", "base/podinfo/release.yaml": "release", "base/README.md": "readme",
				"production/kustomization.yaml": "resources: [../base/podinfo]\n", "production/patch.yaml": "patch", "production/.hidden": "hidden",
			},
		},
		{
			name: "the whole source",
			ops:  []kbuild.CopyOp{{From: "@monorepo/**", To: "@artifact/all/", Exclude: []string{"apps/**", "infrastructure", "deploy"}}},
			want: map[string]string{"all/top.yaml": "top"},
		},
		{
			name: "a glob keeps the path of each match",
			ops:  []kbuild.CopyOp{{From: "@monorepo/deploy/*.yaml", To: "@artifact/out/"}},
			want: map[string]string{"out/deploy/a.yaml": "a", "out/deploy/b.yaml": "b"},
		},
		{
			name: "a folder is copied as a folder of that name",
			ops:  []kbuild.CopyOp{{From: "@monorepo/deploy/sub", To: "@artifact/x"}},
			want: map[string]string{"x/sub/d.yaml": "d"},
		},
		{
			name: "a folder with a trailing slash in from",
			ops:  []kbuild.CopyOp{{From: "@monorepo/deploy/sub/", To: "@artifact/"}},
			want: map[string]string{"sub/d.yaml": "d"},
		},
		{
			name: "a file renamed",
			ops:  []kbuild.CopyOp{{From: "@monorepo/top.yaml", To: "@artifact/cfg/renamed.yaml"}},
			want: map[string]string{"cfg/renamed.yaml": "top"},
		},
		{
			name: "a file into a folder",
			ops:  []kbuild.CopyOp{{From: "@monorepo/top.yaml", To: "@artifact/cfg/"}},
			want: map[string]string{"cfg/top.yaml": "top"},
		},
		{
			name: "a file into a folder an earlier op made",
			ops: []kbuild.CopyOp{
				{From: "@monorepo/deploy/sub/**", To: "@artifact/cfg/"},
				{From: "@monorepo/top.yaml", To: "@artifact/cfg"},
			},
			want: map[string]string{"cfg/d.yaml": "d", "cfg/top.yaml": "top"},
		},
		{
			name: "later operations overwrite",
			ops: []kbuild.CopyOp{
				{From: "@monorepo/deploy/a.yaml", To: "@artifact/x.yaml"},
				{From: "@other/x.yaml", To: "@artifact/x.yaml", Strategy: "Overwrite"},
			},
			want: map[string]string{"x.yaml": "other"},
		},
		{
			name: "two aliases",
			ops: []kbuild.CopyOp{
				{From: "@monorepo/deploy/c.json", To: "@artifact/"},
				{From: "@other/**", To: "@artifact/"},
			},
			want: map[string]string{"c.json": "c", "x.yaml": "other"},
		},
		{
			name: "exclude by name at any depth, and by path below the folder",
			ops:  []kbuild.CopyOp{{From: "@monorepo/apps/**", To: "@artifact/", Exclude: []string{"*.md", "production/patch.yaml", ".*"}}},
			want: map[string]string{
				"base/podinfo/kustomization.yaml": "resources: [release.yaml]\n", "base/podinfo/release.yaml": "release",
				"production/kustomization.yaml": "resources: [../base/podinfo]\n",
			},
		},
		{
			name: "exclude a folder by path below the source's root",
			ops:  []kbuild.CopyOp{{From: "@monorepo/apps/**", To: "@artifact/", Exclude: []string{"apps/base/**"}}},
			want: map[string]string{
				"production/kustomization.yaml": "resources: [../base/podinfo]\n", "production/patch.yaml": "patch", "production/.hidden": "hidden",
			},
		},
		{
			name: "exclude with ** inside",
			ops:  []kbuild.CopyOp{{From: "@monorepo/deploy", To: "@artifact/", Exclude: []string{"**/*.yaml"}}},
			want: map[string]string{"deploy/c.json": "c"},
		},
		{
			name: "an excluded file is not copied",
			ops:  []kbuild.CopyOp{{From: "@monorepo/top.yaml", To: "@artifact/", Exclude: []string{"*.yaml"}}},
			want: map[string]string{},
		},
		{name: "unknown alias", ops: []kbuild.CopyOp{{From: "@nope/x", To: "@artifact/"}}, err: `no source with alias "nope"`},
		{name: "from without alias", ops: []kbuild.CopyOp{{From: "monorepo/x", To: "@artifact/"}}, err: "want @alias/path"},
		{name: "from with an empty alias", ops: []kbuild.CopyOp{{From: "@/x", To: "@artifact/"}}, err: "no alias"},
		{name: "from climbing out", ops: []kbuild.CopyOp{{From: "@monorepo/apps/../../etc", To: "@artifact/"}}, err: `must not contain ".."`},
		{name: "from absolute", ops: []kbuild.CopyOp{{From: "@monorepo//etc/passwd", To: "@artifact/"}}, err: "must be relative"},
		{name: "to climbing out", ops: []kbuild.CopyOp{{From: "@monorepo/top.yaml", To: "@artifact/../x"}}, err: `must not contain ".."`},
		{name: "to absolute", ops: []kbuild.CopyOp{{From: "@monorepo/top.yaml", To: "@artifact//x"}}, err: "must be relative"},
		{name: "to of another alias", ops: []kbuild.CopyOp{{From: "@monorepo/top.yaml", To: "@monorepo/x"}}, err: "want @artifact/path"},
		{name: "to of a longer alias", ops: []kbuild.CopyOp{{From: "@monorepo/top.yaml", To: "@artifacts/x"}}, err: "want @artifact/path"},
		{name: "missing file", ops: []kbuild.CopyOp{{From: "@monorepo/nope.yaml", To: "@artifact/"}}, err: "no such file or folder"},
		{name: "glob matching nothing", ops: []kbuild.CopyOp{{From: "@monorepo/deploy/*.toml", To: "@artifact/"}}, err: "matches deploy/*.toml"},
		{name: "glob all excluded", ops: []kbuild.CopyOp{{From: "@monorepo/deploy/*.yaml", To: "@artifact/", Exclude: []string{"*"}}}, err: "is excluded"},
		{name: "bad glob", ops: []kbuild.CopyOp{{From: "@monorepo/deploy/[", To: "@artifact/"}}, err: "bad glob"},
		{name: "bad exclude", ops: []kbuild.CopyOp{{From: "@monorepo/deploy", To: "@artifact/", Exclude: []string{"[x"}}}, err: "bad glob"},
		{name: "merge strategy", ops: []kbuild.CopyOp{{From: "@monorepo/top.yaml", To: "@artifact/", Strategy: "Merge"}}, err: "strategy Merge is not supported"},
		{
			name: "a file over a folder",
			ops: []kbuild.CopyOp{
				{From: "@monorepo/deploy/sub/**", To: "@artifact/top.yaml/"},
				{From: "@monorepo/*.yaml", To: "@artifact/"},
			},
			err: "cannot be overwritten",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fsys, roots := sourceFS(t, map[string]map[string]string{"monorepo": monorepo, "other": {"x.yaml": "other"}})
			err := kbuild.CopyArtifact(fsys, roots, tc.ops, "/artifact")
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one with %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := filesOf(t, fsys, "/artifact"); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("artifact holds\n%v\nwant\n%v", got, tc.want)
			}
		})
	}
}

func TestCopyArtifactErrorsAreCopyOp(t *testing.T) {
	fsys, roots := sourceFS(t, map[string]map[string]string{"a": {"x": "x"}})
	for _, op := range []kbuild.CopyOp{{From: "a/x", To: "@artifact/"}, {From: "@a/x", To: "@artifact/.."}, {From: "@b/x", To: "@artifact/"}} {
		if err := kbuild.CopyArtifact(fsys, roots, []kbuild.CopyOp{op}, "/out"); !errors.Is(err, kbuild.ErrCopyOp) {
			t.Errorf("%+v: error %v, want ErrCopyOp", op, err)
		}
	}
}

func TestParseFromTo(t *testing.T) {
	for from, want := range map[string][2]string{
		"@monorepo/apps/base/**": {"monorepo", "apps/base/**"},
		"@monorepo/":             {"monorepo", "."},
		"@monorepo":              {"monorepo", "."},
		"@m/./a//b/":             {"m", "a/b"},
	} {
		alias, pattern, err := kbuild.ParseFrom(from)
		if err != nil || alias != want[0] || pattern != want[1] {
			t.Errorf("ParseFrom(%q) = %q, %q, %v; want %q, %q", from, alias, pattern, err, want[0], want[1])
		}
	}
	for to, want := range map[string]struct {
		rel string
		dir bool
	}{
		"@artifact/":        {".", true},
		"@artifact":         {".", true},
		"@artifact/base/":   {"base", true},
		"@artifact/a/b.yml": {"a/b.yml", false},
	} {
		rel, dir, err := kbuild.ParseTo(to)
		if err != nil || rel != want.rel || dir != want.dir {
			t.Errorf("ParseTo(%q) = %q, %v, %v; want %q, %v", to, rel, dir, err, want.rel, want.dir)
		}
	}
}

func TestTreeDigest(t *testing.T) {
	a, _ := sourceFS(t, map[string]map[string]string{"t": {"x/a": "1", "b": "2"}})
	b, _ := sourceFS(t, map[string]map[string]string{"t": {"b": "2", "x/a": "1"}})
	c, _ := sourceFS(t, map[string]map[string]string{"t": {"x/a": "1", "b": "3"}})
	d, _ := sourceFS(t, map[string]map[string]string{"t": {"xa": "1", "b": "2"}})
	da, err := kbuild.TreeDigest(a, "/src/t")
	if err != nil {
		t.Fatal(err)
	}
	db, _ := kbuild.TreeDigest(b, "/src/t")
	dc, _ := kbuild.TreeDigest(c, "/src/t")
	dd, _ := kbuild.TreeDigest(d, "/src/t")
	if da != db || da == dc || da == dd || !strings.HasPrefix(da, "sha256:") || len(da) != len("sha256:")+64 {
		t.Fatalf("digests %s %s %s %s", da, db, dc, dd)
	}
}

// FuzzCopyArtifact: whatever the copy operation's strings (they come from the repositories
// mirror reads), copying never panics and writes only below the artifact's folder, and never
// changes a source.
func FuzzCopyArtifact(f *testing.F) {
	for _, s := range [][3]string{
		{"@monorepo/apps/base/**", "@artifact/base/", ""},
		{"@monorepo/deploy/*.yaml", "@artifact/", "*.json"},
		{"@monorepo/top.yaml", "@artifact/x.yaml", ""},
		{"@monorepo/apps/../../etc", "@artifact/", ""},
		{"@monorepo/**", "@artifact/../../", "**"},
		{"@other//x", "@artifact//y", "[z"},
		{"@monorepo/*/*/**", "@artifact/a/./b/", "apps/**"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, from, to, exclude string) {
		fsys, roots := sourceFS(t, map[string]map[string]string{"monorepo": monorepo, "other": {"x.yaml": "other"}})
		before := filesOf(t, fsys, "/src")
		op := kbuild.CopyOp{From: from, To: to}
		if exclude != "" {
			op.Exclude = strings.Split(exclude, ",")
		}
		_ = kbuild.CopyArtifact(fsys, roots, []kbuild.CopyOp{op}, "/out/artifact")
		var outside []string
		if err := fsys.Walk("/", func(p string, info os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			if !info.IsDir() && !strings.HasPrefix(p, "/src/") && !strings.HasPrefix(p, "/out/artifact/") {
				outside = append(outside, p)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		sort.Strings(outside)
		if len(outside) > 0 {
			t.Fatalf("from %q to %q wrote outside the artifact: %v", from, to, outside)
		}
		if after := filesOf(t, fsys, "/src"); !reflect.DeepEqual(before, after) {
			t.Fatalf("from %q to %q changed the sources", from, to)
		}
	})
}
