package spec_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/spec"
)

// A cluster folder's manifests are read recursively, sorted by path (apps.d/ before apps/, as
// byte strings), split into documents (empty ones skipped and not counted) and encoded
// canonically; other files are ignored.
func TestClusterDocuments(t *testing.T) {
	s, err := spec.Load("testdata/cluster/good/ferry.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if s.Cluster == nil || s.Cluster.Path != "./cluster" || s.ClusterPath() != filepath.Join("testdata", "cluster", "good", "cluster") {
		t.Fatalf("cluster %+v, path %q", s.Cluster, s.ClusterPath())
	}
	docs, err := s.ClusterDocuments()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range docs {
		got = append(got, fmt.Sprintf("%s#%d %s %s %s/%s", d.Source, d.Index, d.APIVersion, d.Kind, d.Namespace, d.Name))
	}
	want := []string{
		"apps.d/config.yaml#1 v1 ConfigMap apps/settings",
		"apps/platform.yml#1 kustomize.toolkit.fluxcd.io/v1 Kustomization apps/platform",
		"apps/platform.yml#2 source.toolkit.fluxcd.io/v1 GitRepository apps/platform",
		"namespaces.yaml#1 v1 Namespace /apps",
		"namespaces.yaml#2 v1 Namespace /monitoring",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("documents:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	wantYAML := "apiVersion: v1\nkind: Namespace\nmetadata:\n  labels:\n    team: ops\n  name: monitoring\n"
	if string(docs[4].YAML) != wantYAML {
		t.Fatalf("canonical YAML:\n%s\nwant:\n%s", docs[4].YAML, wantYAML)
	}
	if !bytes.Contains(docs[0].YAML, []byte(`replicas: "3"`)) {
		t.Fatalf("a string that looks like a number must stay quoted:\n%s", docs[0].YAML)
	}
}

// A spec with only a cluster folder carries something; "cluster" is reserved as an item name;
// cluster.path is required.
func TestClusterSpecFields(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "objs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "objs", "ns.yaml"), []byte("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	head := "apiVersion: ferry.dev/v1alpha1\nkind: Mirror\n"
	if _, err := spec.Parse(filepath.Join(dir, "ferry.yaml"), []byte(head+"cluster:\n  path: objs\n")); err != nil {
		t.Fatalf("a cluster-only spec: %v", err)
	}
	abs := filepath.Join(dir, "objs")
	if s, err := spec.Parse("elsewhere/ferry.yaml", []byte(head+"cluster:\n  path: "+abs+"\n")); err != nil || s.ClusterPath() != abs {
		t.Fatalf("an absolute cluster.path: %v", err)
	}
	for _, c := range []struct{ name, yaml, want string }{
		{"reserved name", head + "images:\n  - name: cluster\n    image: r.example/app\n    tag: v1\n", `images[0].name: "cluster"`},
		{"no path", head + "cluster: {}\n", "cluster.path: required"},
		{"unknown field", head + "cluster:\n  path: objs\n  paths: [x]\n", "cluster.paths: unknown field; known fields here: path"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := spec.Parse(filepath.Join(dir, "ferry.yaml"), []byte(c.yaml))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one saying %s", err, c.want)
			}
		})
	}
}

// Every bad cluster folder is refused at parse time, the error naming the file and the
// document.
func TestClusterErrors(t *testing.T) {
	cases := []struct {
		dir  string
		want []string
	}{
		{"no-folder", []string{"cluster.path: ./cluster: no such folder"}},
		{"not-a-folder", []string{"cluster.path: ./cluster: not a folder"}},
		{"bad-yaml", []string{"cluster.path: cluster/cm.yaml document 2: not valid YAML"}},
		{"no-kind", []string{"cluster.path: cluster/objs.yaml document 2: not a Kubernetes object: kind required"}},
		{"no-name", []string{"cluster.path: cluster/cm.yaml document 1: not a Kubernetes object: metadata.name required"}},
		{"not-an-object", []string{"cluster.path: cluster/list.yaml document 1: not a Kubernetes object"}},
		{"duplicate", []string{"cluster.path: cluster/b.yaml document 1: Namespace apps is already defined by cluster/a.yaml document 1"}},
		{"bad-types", []string{"cluster.path: cluster/cm.yaml document 1: kind: want a string"}},
		{"no-manifests", []string{"cluster.path: ./cluster: holds no Kubernetes objects"}},
	}
	for _, c := range cases {
		t.Run(c.dir, func(t *testing.T) {
			expectSpecError(t, filepath.Join("testdata", "cluster", c.dir, "ferry.yaml"), c.want...)
		})
	}
}

// Cases that cannot live in Git: a link, a FIFO, an empty folder, a folder over the size limit.
func TestClusterErrorsOnDisk(t *testing.T) {
	good, err := os.ReadFile("testdata/cluster/good/ferry.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ns := []byte("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n")
	setup := func(t *testing.T, files map[string][]byte) string {
		dir := t.TempDir()
		if err := os.MkdirAll(filepath.Join(dir, "cluster"), 0o755); err != nil {
			t.Fatal(err)
		}
		for name, data := range files {
			p := filepath.Join(dir, "cluster", name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		path := filepath.Join(dir, "ferry.yaml")
		if err := os.WriteFile(path, good, 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	t.Run("link", func(t *testing.T) {
		path := setup(t, map[string][]byte{"ns.yaml": ns})
		if err := os.Symlink("ns.yaml", filepath.Join(filepath.Dir(path), "cluster", "link.yaml")); err != nil {
			t.Fatal(err)
		}
		expectSpecError(t, path, "cluster.path: cluster/link.yaml: not a regular file")
	})
	t.Run("linked folder", func(t *testing.T) {
		path := setup(t, map[string][]byte{"ns.yaml": ns})
		if err := os.Symlink(t.TempDir(), filepath.Join(filepath.Dir(path), "cluster", "sub")); err != nil {
			t.Fatal(err)
		}
		expectSpecError(t, path, "cluster.path: cluster/sub: not a regular file")
	})
	t.Run("fifo", func(t *testing.T) {
		path := setup(t, map[string][]byte{"ns.yaml": ns})
		if err := syscall.Mkfifo(filepath.Join(filepath.Dir(path), "cluster", "pipe.yaml"), 0o644); err != nil {
			t.Fatal(err)
		}
		expectSpecError(t, path, "cluster.path: cluster/pipe.yaml: not a regular file")
	})
	t.Run("empty folder", func(t *testing.T) {
		expectSpecError(t, setup(t, nil), "cluster.path: ./cluster: holds no Kubernetes objects")
	})
	t.Run("too large", func(t *testing.T) {
		big := append([]byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big\n  namespace: a\ndata:\n  x: \""), bytes.Repeat([]byte("x"), bundle.MaxClusterManifestsSize/2)...)
		big = append(big, "\"\n"...)
		expectSpecError(t, setup(t, map[string][]byte{"a.yaml": big, "b.yaml": big}), "larger than 16777216 bytes together (at cluster/b.yaml)")
	})
	t.Run("too large once encoded", func(t *testing.T) {
		// Aliases make a 6 MiB file an 18 MiB object.
		doc := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big\n  namespace: a\ndata:\n  x: &x " + strings.Repeat("x", 6<<20) + "\n  y: *x\n  z: *x\n"
		expectSpecError(t, setup(t, map[string][]byte{"a.yaml": []byte(doc)}), "once encoded for the bundle, more than 16777216")
	})
	t.Run("just under the limit", func(t *testing.T) {
		big := append([]byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big\n  namespace: a\ndata:\n  x: \""), bytes.Repeat([]byte("x"), bundle.MaxClusterManifestsSize-200)...)
		big = append(big, "\"\n"...)
		if _, err := spec.Load(setup(t, map[string][]byte{"a.yaml": big})); err != nil {
			t.Fatal(err)
		}
	})
}

func expectSpecError(t *testing.T, path string, want ...string) {
	t.Helper()
	_, err := spec.Load(path)
	if err == nil {
		t.Fatal("accepted")
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Fatalf("error does not contain %q:\n%v", w, err)
		}
	}
	if !strings.HasPrefix(err.Error(), "spec "+path+":") {
		t.Fatalf("error does not name the spec: %v", err)
	}
}
