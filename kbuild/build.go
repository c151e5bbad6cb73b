package kbuild

import (
	"fmt"
	"path"
	"sort"
	"strings"

	kustomizev1 "github.com/fluxcd/kustomize-controller/api/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/konfig"
	"sigs.k8s.io/kustomize/api/krusty"
	kustypes "sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/kustomize/kyaml/resid"
	"sigs.k8s.io/yaml"
)

// Where Build puts things in its in-memory file system: SourceRoot is where the source tree is
// extracted (ExtractTarGz's root), overlayRoot where the generated overlay is written.
const (
	SourceRoot  = "/source"
	overlayRoot = "/ferry-overlay"
)

// ErrRemoteRefused is wrapped by the error for a kustomization that names anything remote.
var ErrRemoteRefused = fmt.Errorf("remote bases are refused: Ferry builds only from the bundle")

// Overlay is what Ferry's generated kustomize overlay sets over the build: a Kustomization's
// targetNamespace and images.
type Overlay struct {
	// TargetNamespace, when set, becomes the overlay's namespace.
	TargetNamespace string
	// Images become the overlay's images list, Patches its patches.
	Images  []kustypes.Image
	Patches []kustypes.Patch
	// NamePrefix and NameSuffix become the overlay's.
	NamePrefix, NameSuffix string
	// Labels and Annotations are set on every built object (spec.commonMetadata): on the
	// objects themselves, not on selectors or templates, as Flux does.
	Labels, Annotations map[string]string
}

// OverlayOf returns the overlay a Kustomization's spec asks for.
func OverlayOf(k *kustomizev1.Kustomization) Overlay {
	o := Overlay{TargetNamespace: k.Spec.TargetNamespace}
	for _, img := range k.Spec.Images {
		o.Images = append(o.Images, kustypes.Image{Name: img.Name, NewName: img.NewName, NewTag: img.NewTag, Digest: img.Digest})
	}
	for _, p := range k.Spec.Patches {
		kp := kustypes.Patch{Patch: p.Patch}
		if t := p.Target; t != nil {
			kp.Target = &kustypes.Selector{
				ResId:              resid.ResId{Gvk: resid.Gvk{Group: t.Group, Version: t.Version, Kind: t.Kind}, Name: t.Name, Namespace: t.Namespace},
				AnnotationSelector: t.AnnotationSelector,
				LabelSelector:      t.LabelSelector,
			}
		}
		o.Patches = append(o.Patches, kp)
	}
	o.NamePrefix, o.NameSuffix = k.Spec.NamePrefix, k.Spec.NameSuffix
	if m := k.Spec.CommonMetadata; m != nil {
		o.Labels, o.Annotations = m.Labels, m.Annotations
	}
	return o
}

// needed says whether the overlay changes anything kustomize builds.
func (ov Overlay) needed() bool {
	return ov.TargetNamespace != "" || len(ov.Images) > 0 || len(ov.Patches) > 0 || ov.NamePrefix != "" || ov.NameSuffix != ""
}

// Build runs kustomize on dir (relative to the source's root) in fsys, with the source tree at
// SourceRoot. With a target namespace or images, a generated overlay sets them. Remote references
// and plugins are refused; loading files is restricted to each kustomization's root. With
// vars not nil, postBuild substitution is done on every object that does not disable it.
func Build(fsys filesys.FileSystem, dir string, ov Overlay, vars map[string]string) ([]*unstructured.Unstructured, error) {
	rel, err := cleanEntry(strings.TrimPrefix(path.Clean("/"+dir), "/"))
	if err != nil {
		return nil, fmt.Errorf("path %q: %w", dir, err)
	}
	buildDir := path.Join(SourceRoot, rel)
	if !fsys.IsDir(buildDir) {
		return nil, fmt.Errorf("path %q: no such folder in the source", dir)
	}
	if kustomizationFile(fsys, buildDir) == "" {
		if err := generateKustomization(fsys, buildDir); err != nil {
			return nil, fmt.Errorf("path %q: %w", dir, err)
		}
	}
	if err := checkLocal(fsys, buildDir, map[string]bool{}); err != nil {
		return nil, err
	}
	root := buildDir
	if ov.needed() {
		k := kustypes.Kustomization{
			TypeMeta:   kustypes.TypeMeta{APIVersion: kustypes.KustomizationVersion, Kind: kustypes.KustomizationKind},
			Namespace:  ov.TargetNamespace,
			Images:     ov.Images,
			Patches:    ov.Patches,
			NamePrefix: ov.NamePrefix,
			NameSuffix: ov.NameSuffix,
			Resources:  []string{".." + buildDir},
		}
		b, err := yaml.Marshal(k)
		if err != nil {
			return nil, err
		}
		if err := fsys.MkdirAll(overlayRoot); err != nil {
			return nil, err
		}
		if err := fsys.WriteFile(path.Join(overlayRoot, konfig.DefaultKustomizationFileName()), b); err != nil {
			return nil, err
		}
		root = overlayRoot
	}
	opts := krusty.MakeDefaultOptions()
	opts.LoadRestrictions = kustypes.LoadRestrictionsRootOnly
	opts.PluginConfig = kustypes.DisabledPluginConfig()
	resMap, err := krusty.MakeKustomizer(opts).Run(fsys, root)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %q: %w", dir, err)
	}
	var objs []*unstructured.Unstructured
	for _, res := range resMap.Resources() {
		// Through JSON, so numbers are int64 or float64 as unstructured objects expect (a map
		// straight from the YAML holds int, which cannot be deep-copied).
		b, err := substituteJSON(res, vars)
		if err != nil {
			return nil, fmt.Errorf("kustomize build %q: %s: %w", dir, res.CurId(), err)
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(b); err != nil {
			return nil, fmt.Errorf("kustomize build %q: %s: %w", dir, res.CurId(), err)
		}
		setMetadata(u, ov.Labels, ov.Annotations)
		objs = append(objs, u)
	}
	return objs, nil
}

// kustomizationFile returns the path of dir's kustomization file, or "".
func kustomizationFile(fsys filesys.FileSystem, dir string) string {
	for _, n := range konfig.RecognizedKustomizationFileNames() {
		if p := path.Join(dir, n); fsys.Exists(p) && !fsys.IsDir(p) {
			return p
		}
	}
	return ""
}

// generateKustomization writes a kustomization.yaml into a folder that has none, listing its
// manifests (.yaml, .yml, .json) and, for each subfolder, the subfolder itself when it has a
// kustomization file or else its manifests, recursively.
func generateKustomization(fsys filesys.FileSystem, dir string) error {
	var resources []string
	var walk func(d string) error
	walk = func(d string) error {
		names, err := fsys.ReadDir(d)
		if err != nil {
			return err
		}
		sort.Strings(names)
		for _, n := range names {
			p := path.Join(d, n)
			rel := strings.TrimPrefix(strings.TrimPrefix(p, dir), "/")
			if fsys.IsDir(p) {
				if strings.HasPrefix(n, ".") {
					continue
				}
				if kustomizationFile(fsys, p) != "" {
					resources = append(resources, rel)
					continue
				}
				if err := walk(p); err != nil {
					return err
				}
				continue
			}
			switch path.Ext(n) {
			case ".yaml", ".yml", ".json":
				resources = append(resources, rel)
			}
		}
		return nil
	}
	if err := walk(dir); err != nil {
		return err
	}
	b, err := yaml.Marshal(kustypes.Kustomization{
		TypeMeta:  kustypes.TypeMeta{APIVersion: kustypes.KustomizationVersion, Kind: kustypes.KustomizationKind},
		Resources: resources,
	})
	if err != nil {
		return err
	}
	return fsys.WriteFile(path.Join(dir, konfig.DefaultKustomizationFileName()), b)
}

// checkLocal reads dir's kustomization file and refuses any reference to something remote
// (a Git repository or an HTTP URL), following local bases and components.
func checkLocal(fsys filesys.FileSystem, dir string, seen map[string]bool) error {
	if seen[dir] {
		return nil
	}
	seen[dir] = true
	file := kustomizationFile(fsys, dir)
	if file == "" {
		return nil
	}
	b, err := fsys.ReadFile(file)
	if err != nil {
		return err
	}
	var k kustypes.Kustomization
	if err := yaml.Unmarshal(b, &k); err != nil {
		return fmt.Errorf("%s: %w", strings.TrimPrefix(file, SourceRoot+"/"), err)
	}
	refuse := func(field, ref string) error {
		return fmt.Errorf("%s: %s %q: %w", strings.TrimPrefix(file, SourceRoot+"/"), field, ref, ErrRemoteRefused)
	}
	// References that may be folders to follow. Deprecated fields are read too: kustomize
	// still honours them.
	//lint:ignore SA1019 kustomize still loads bases
	bases := k.Bases
	for field, refs := range map[string][]string{
		"resources": k.Resources, "bases": bases, "components": k.Components,
		"generators": k.Generators, "transformers": k.Transformers, "validators": k.Validators,
	} {
		for _, ref := range refs {
			if strings.Contains(ref, "\n") { // an inline object (generators, transformers)
				continue
			}
			local := path.Join(dir, ref)
			if !path.IsAbs(ref) && fsys.Exists(local) {
				if fsys.IsDir(local) {
					if err := checkLocal(fsys, local, seen); err != nil {
						return err
					}
				}
				continue
			}
			if isRemote(ref) {
				return refuse(field, ref)
			}
		}
	}
	// References that are always files.
	var files []string
	files = append(files, k.Crds...)
	files = append(files, k.Configurations...)
	for _, p := range k.Patches {
		files = append(files, p.Path)
	}
	//lint:ignore SA1019 kustomize still loads patchesJson6902
	for _, p := range k.PatchesJson6902 {
		files = append(files, p.Path)
	}
	//lint:ignore SA1019 kustomize still loads patchesStrategicMerge
	for _, p := range k.PatchesStrategicMerge {
		if !strings.Contains(string(p), "\n") {
			files = append(files, string(p))
		}
	}
	if p := k.OpenAPI["path"]; p != "" {
		files = append(files, p)
	}
	for _, g := range k.ConfigMapGenerator {
		files = append(files, g.FileSources...)
		files = append(files, g.EnvSources...)
	}
	for _, g := range k.SecretGenerator {
		files = append(files, g.FileSources...)
		files = append(files, g.EnvSources...)
	}
	for _, f := range files {
		if _, v, ok := strings.Cut(f, "="); ok { // key=path of a generator's file source
			f = v
		}
		if f != "" && isRemote(f) {
			return refuse("file", f)
		}
	}
	return nil
}

// isRemote reports whether a kustomization reference names something outside the source: a URL
// with a scheme, an scp-like Git address, or a host-qualified repository path.
func isRemote(ref string) bool {
	if strings.Contains(ref, "://") || strings.HasPrefix(ref, "git@") || strings.HasPrefix(ref, "git::") {
		return true
	}
	if strings.Contains(ref, "?ref=") || strings.Contains(ref, "?version=") || strings.Contains(ref, ".git//") {
		return true
	}
	first, _, _ := strings.Cut(ref, "/")
	return strings.Contains(first, ".") && first != "." && first != ".." && strings.Contains(ref, "/") &&
		!strings.HasSuffix(first, ".yaml") && !strings.HasSuffix(first, ".yml") && !strings.HasSuffix(first, ".json")
}

// setMetadata adds labels and annotations to an object's own metadata.
func setMetadata(u *unstructured.Unstructured, labels, annotations map[string]string) {
	if len(labels) > 0 {
		l := u.GetLabels()
		if l == nil {
			l = map[string]string{}
		}
		for k, v := range labels {
			l[k] = v
		}
		u.SetLabels(l)
	}
	if len(annotations) > 0 {
		a := u.GetAnnotations()
		if a == nil {
			a = map[string]string{}
		}
		for k, v := range annotations {
			a[k] = v
		}
		u.SetAnnotations(a)
	}
}
