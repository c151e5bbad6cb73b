package deploy_test

import (
	"io/fs"
	"path"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	kustypes "sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/ferry-gitops/ferry/deploy"
)

// The embedded base builds with kustomize as it is, holds the objects docs/install.md names,
// and its Deployment mounts what `sync install` provides where the constants say.
func TestBaseBuilds(t *testing.T) {
	fsys := filesys.MakeFsInMemory()
	err := fs.WalkDir(deploy.Files, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := deploy.Files.ReadFile(p)
		if err != nil {
			return err
		}
		return fsys.WriteFile(path.Join("/base", p), b)
	})
	if err != nil {
		t.Fatal(err)
	}
	opts := krusty.MakeDefaultOptions()
	opts.PluginConfig = kustypes.DisabledPluginConfig()
	resMap, err := krusty.MakeKustomizer(opts).Run(fsys, "/base")
	if err != nil {
		t.Fatalf("kustomize build of the embedded base: %v", err)
	}
	var got []string
	var dep appsv1.Deployment
	for _, r := range resMap.Resources() {
		id := r.GetKind() + "/" + r.GetName()
		got = append(got, id)
		if ns := r.GetNamespace(); r.GetKind() != "Namespace" && !strings.HasPrefix(r.GetKind(), "Cluster") && ns != "ferry-system" {
			t.Errorf("%s in namespace %q, want ferry-system", id, ns)
		}
		if r.GetKind() == "Deployment" {
			b, err := r.AsYAML()
			if err != nil {
				t.Fatal(err)
			}
			if err := yaml.UnmarshalStrict(b, &dep); err != nil {
				t.Fatalf("Deployment: %v", err)
			}
		}
	}
	want := []string{
		"Namespace/ferry-system", "ServiceAccount/ferry-sync", "ClusterRole/ferry-sync",
		"ClusterRoleBinding/ferry-sync", "ClusterRoleBinding/ferry-sync-cluster-admin",
		"PersistentVolumeClaim/ferry-cache", "Deployment/ferry-sync", "Service/ferry",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("base holds %v, want %v", got, want)
	}
	c := dep.Spec.Template.Spec.Containers[0]
	if c.Image != deploy.ImagePlaceholder {
		t.Errorf("image %q, want the placeholder %q", c.Image, deploy.ImagePlaceholder)
	}
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m.Name
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range dep.Spec.Template.Spec.Volumes {
		volumes[v.Name] = v
	}
	if v := volumes[mounts[deploy.CacheMount]]; v.PersistentVolumeClaim == nil || v.PersistentVolumeClaim.ClaimName != "ferry-cache" {
		t.Errorf("%s is not the ferry-cache claim: %+v", deploy.CacheMount, v)
	}
	if v := volumes[mounts["/etc/ferry"]]; v.ConfigMap == nil || v.ConfigMap.Name != deploy.ConfigMapName {
		t.Errorf("/etc/ferry is not the ConfigMap %s: %+v", deploy.ConfigMapName, v)
	}
	if v := volumes[mounts[deploy.KeysDir]]; v.ConfigMap == nil || v.ConfigMap.Name != deploy.KeysConfigMapName {
		t.Errorf("%s is not the ConfigMap %s: %+v", deploy.KeysDir, deploy.KeysConfigMapName, v)
	}
	// Scratch volumes are bounded: an emptyDir without a sizeLimit can fill the node's disk.
	for _, v := range dep.Spec.Template.Spec.Volumes {
		if v.EmptyDir != nil && (v.EmptyDir.SizeLimit == nil || v.EmptyDir.SizeLimit.Sign() <= 0) {
			t.Errorf("emptyDir volume %s has no sizeLimit", v.Name)
		}
	}
	if v := volumes[mounts["/tmp"]]; v.EmptyDir == nil {
		t.Errorf("/tmp (the Git remote's work directory) is not an emptyDir: %+v", v)
	}
	if want := []string{"run", "--config", "/etc/ferry/" + deploy.ConfigFileName}; !slices.Equal(c.Args, want) {
		t.Errorf("args %v, want %v", c.Args, want)
	}
	t.Logf("base: %d objects; Deployment image %s, mounts %v", len(got), c.Image, mounts)
}

func TestImageTag(t *testing.T) {
	for version, want := range map[string]string{
		"v1.2.3": "v1.2.3",
		"dev":    "dev",
		"v0.0.0-20260101000000-abcdef123456+dirty": "v0.0.0-20260101000000-abcdef123456-dirty",
		"":   "v",
		"-x": "v-x",
	} {
		if got := deploy.ImageTag(version); got != want {
			t.Errorf("ImageTag(%q) = %q, want %q", version, got, want)
		}
	}
	if got := deploy.ImageTag(strings.Repeat("a", 200)); len(got) != 128 {
		t.Errorf("ImageTag of 200 characters has %d", len(got))
	}
}
