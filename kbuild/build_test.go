package kbuild_test

import (
	"errors"
	"path"
	"strings"
	"testing"

	kustomizev1 "github.com/fluxcd/kustomize-controller/api/v1"
	"github.com/fluxcd/pkg/apis/kustomize"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/ferry-gitops/ferry/kbuild"
)

// tree writes files (relative to the source's root) into a new in-memory file system at
// kbuild.SourceRoot.
func tree(t *testing.T, files map[string]string) filesys.FileSystem {
	t.Helper()
	fsys := filesys.MakeFsInMemory()
	for name, data := range files {
		p := path.Join(kbuild.SourceRoot, name)
		if err := fsys.MkdirAll(path.Dir(p)); err != nil {
			t.Fatal(err)
		}
		if err := fsys.WriteFile(p, []byte(data)); err != nil {
			t.Fatal(err)
		}
	}
	return fsys
}

func configMap(name, extra string) string {
	return "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: " + name + "\n" + extra + "data:\n  greeting: ${GREETING}\n  zone: ${ZONE:=zone-a}\n"
}

// A folder without a kustomization file is built from its manifests, recursively; the overlay
// of a Kustomization's spec sets namespace, name prefix and suffix and common metadata; postBuild
// substitution replaces variables except on an object that disables it.
func TestBuild(t *testing.T) {
	fsys := tree(t, map[string]string{
		"app/cm.yaml":          configMap("cm", ""),
		"app/sub/off.yaml":     configMap("off", "  annotations:\n    "+kbuild.SubstituteKey+": "+kbuild.SubstituteDisabled+"\n"),
		"app/README.md":        "not a manifest",
		"app/.hidden/cm.yaml":  configMap("hidden", ""),
		"other/unrelated.yaml": configMap("unrelated", ""),
	})
	k := &kustomizev1.Kustomization{}
	k.Spec.TargetNamespace = "apps"
	k.Spec.NamePrefix, k.Spec.NameSuffix = "p-", "-s"
	k.Spec.CommonMetadata = &kustomizev1.CommonMetadata{Labels: map[string]string{"team": "a"}, Annotations: map[string]string{"note": "n"}}
	objs, err := kbuild.Build(fsys, "./app/", kbuild.OverlayOf(k), map[string]string{"GREETING": "hello"})
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*unstructured.Unstructured{}
	for _, o := range objs {
		byName[o.GetName()] = o
	}
	if len(objs) != 2 || byName["p-cm-s"] == nil || byName["p-off-s"] == nil {
		t.Fatalf("built %d objects %v, want p-cm-s and p-off-s", len(objs), byName)
	}
	for name, want := range map[string][2]string{"p-cm-s": {"hello", "zone-a"}, "p-off-s": {"${GREETING}", "${ZONE:=zone-a}"}} {
		o := byName[name]
		data, _, _ := unstructured.NestedStringMap(o.Object, "data")
		if data["greeting"] != want[0] || data["zone"] != want[1] {
			t.Errorf("%s: data %v, want greeting %q zone %q", name, data, want[0], want[1])
		}
		if o.GetNamespace() != "apps" || o.GetLabels()["team"] != "a" || o.GetAnnotations()["note"] != "n" {
			t.Errorf("%s: namespace %q labels %v annotations %v", name, o.GetNamespace(), o.GetLabels(), o.GetAnnotations())
		}
	}

	// Without variables nothing is substituted.
	objs, err = kbuild.Build(tree(t, map[string]string{"cm.yaml": configMap("cm", "")}), "", kbuild.Overlay{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if data, _, _ := unstructured.NestedStringMap(objs[0].Object, "data"); len(objs) != 1 || data["greeting"] != "${GREETING}" {
		t.Fatalf("built %v without variables", objs)
	}
}

// OverlayOf carries images and patches over to kustomize's types, and Build applies them.
func TestOverlayOf(t *testing.T) {
	k := &kustomizev1.Kustomization{}
	k.Spec.Images = []kustomize.Image{{Name: "web", NewName: "registry.example/web", NewTag: "v2"}}
	k.Spec.Patches = []kustomize.Patch{{Patch: "- op: remove\n  path: /data", Target: &kustomize.Selector{Version: "v1", Kind: "ConfigMap", Name: "cm"}}}
	ov := kbuild.OverlayOf(k)
	if len(ov.Images) != 1 || ov.Images[0].Name != "web" || ov.Images[0].NewName != "registry.example/web" || ov.Images[0].NewTag != "v2" {
		t.Errorf("images %+v", ov.Images)
	}
	if len(ov.Patches) != 1 || ov.Patches[0].Target == nil || ov.Patches[0].Target.Kind != "ConfigMap" || ov.Patches[0].Target.Name != "cm" || ov.Patches[0].Target.Version != "v1" {
		t.Errorf("patches %+v", ov.Patches)
	}
	fsys := tree(t, map[string]string{"cm.yaml": configMap("cm", "")})
	objs, err := kbuild.Build(fsys, "", ov, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := objs[0].Object["data"]; ok {
		t.Errorf("the patch was not applied: %v", objs[0].Object)
	}
}

// A remote reference anywhere the build reaches, a path that leaves the source or names no
// folder, fail the build and say why.
func TestBuildRefuses(t *testing.T) {
	fsys := tree(t, map[string]string{
		"remote/kustomization.yaml": "resources:\n  - https://github.com/org/repo//x\n",
		"deep/kustomization.yaml":   "resources:\n  - ../remote\n",
		"patch/kustomization.yaml":  "resources:\n  - cm.yaml\npatches:\n  - path: https://example.com/patch.yaml\n",
		"patch/cm.yaml":             configMap("cm", ""),
	})
	for _, tc := range []struct{ dir, want string }{
		{"remote", `remote/kustomization.yaml: resources "https://github.com/org/repo//x": remote bases are refused`},
		{"deep", `remote/kustomization.yaml: resources "https://github.com/org/repo//x": remote bases are refused`},
		{"patch", `patch/kustomization.yaml: file "https://example.com/patch.yaml": remote bases are refused`},
	} {
		_, err := kbuild.Build(fsys, tc.dir, kbuild.Overlay{}, nil)
		if !errors.Is(err, kbuild.ErrRemoteRefused) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one wrapping ErrRemoteRefused saying %q", tc.dir, err, tc.want)
		}
	}
	for dir, want := range map[string]string{"nowhere": "no such folder in the source", "../../etc": `path "../../etc": no such folder`} {
		if _, err := kbuild.Build(fsys, dir, kbuild.Overlay{}, nil); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want one saying %q", dir, err, want)
		}
	}
}
