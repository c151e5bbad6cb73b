package kbuild

import (
	"fmt"
	"sort"
	"strings"

	helmv2 "github.com/fluxcd/helm-controller/api/v2"
	kustomizev1 "github.com/fluxcd/kustomize-controller/api/v1"
	sourcev1 "github.com/fluxcd/source-controller/api/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// fluxControllers are the Deployments of Flux's own controllers, as Flux's bootstrap
// (flux-system/gotk-components.yaml) installs them.
var fluxControllers = map[string]bool{
	"source-controller": true, "kustomize-controller": true, "helm-controller": true,
	"notification-controller": true, "image-reflector-controller": true,
	"image-automation-controller": true, "source-watcher": true,
}

// SkipFluxControllers leaves out the Deployments of Flux's controllers (labelled
// app.kubernetes.io/part-of: flux, named as Flux names them): with sync as the reconciler they
// must not also run, and mirror does not carry their images. Everything else of Flux's
// bootstrap (its CRDs, namespace, RBAC, services, network policies) is kept. It returns what
// is kept and what was skipped ("Deployment ns/name"), sorted.
func SkipFluxControllers(objs []*unstructured.Unstructured) (kept []*unstructured.Unstructured, skipped []string) {
	for _, o := range objs {
		if o.GetKind() == "Deployment" && o.GroupVersionKind().Group == "apps" &&
			o.GetLabels()["app.kubernetes.io/part-of"] == "flux" && fluxControllers[o.GetName()] {
			skipped = append(skipped, "Deployment "+o.GetNamespace()+"/"+o.GetName())
			continue
		}
		kept = append(kept, o)
	}
	sort.Strings(skipped)
	return kept, skipped
}

// migrations are the Flux API versions Flux no longer serves whose objects have the same
// fields in the version it serves now: a Flux repository written for them is applied as the
// served version, as `flux migrate` rewrites it.
var migrations = map[schema.GroupVersionKind]struct {
	to  schema.GroupVersion
	new func() runtime.Object
}{
	{Group: sourcev1.GroupVersion.Group, Version: "v1beta2", Kind: sourcev1.GitRepositoryKind}:       {sourcev1.GroupVersion, func() runtime.Object { return &sourcev1.GitRepository{} }},
	{Group: sourcev1.GroupVersion.Group, Version: "v1beta2", Kind: sourcev1.OCIRepositoryKind}:       {sourcev1.GroupVersion, func() runtime.Object { return &sourcev1.OCIRepository{} }},
	{Group: sourcev1.GroupVersion.Group, Version: "v1beta2", Kind: sourcev1.HelmRepositoryKind}:      {sourcev1.GroupVersion, func() runtime.Object { return &sourcev1.HelmRepository{} }},
	{Group: sourcev1.GroupVersion.Group, Version: "v1beta2", Kind: sourcev1.HelmChartKind}:           {sourcev1.GroupVersion, func() runtime.Object { return &sourcev1.HelmChart{} }},
	{Group: sourcev1.GroupVersion.Group, Version: "v1beta2", Kind: sourcev1.BucketKind}:              {sourcev1.GroupVersion, func() runtime.Object { return &sourcev1.Bucket{} }},
	{Group: helmv2.GroupVersion.Group, Version: "v2beta2", Kind: helmv2.HelmReleaseKind}:             {helmv2.GroupVersion, func() runtime.Object { return &helmv2.HelmRelease{} }},
	{Group: kustomizev1.GroupVersion.Group, Version: "v1beta2", Kind: kustomizev1.KustomizationKind}: {kustomizev1.GroupVersion, func() runtime.Object { return &kustomizev1.Kustomization{} }},
}

// MigrateFluxAPIs rewrites, in place, the apiVersion of each object of a Flux API version
// Flux no longer serves (source.toolkit.fluxcd.io/v1beta2, helm.toolkit.fluxcd.io/v2beta2,
// kustomize.toolkit.fluxcd.io/v1beta2) to the version it serves, when every field the object
// sets exists there; an object using a field the served version dropped is an error naming
// the object and the field, since applying it would silently lose that field. It returns the
// objects migrated ("HelmRelease ns/name v2beta2 → v2"), sorted.
func MigrateFluxAPIs(objs []*unstructured.Unstructured) ([]string, error) {
	var done []string
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		m, ok := migrations[gvk]
		if !ok {
			continue
		}
		what := fmt.Sprintf("%s %s/%s", gvk.Kind, o.GetNamespace(), o.GetName())
		c := o.DeepCopy()
		c.SetAPIVersion(m.to.String())
		unstructured.RemoveNestedField(c.Object, "status")
		if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(c.Object, m.new(), true); err != nil {
			return nil, fmt.Errorf("%s is of %s, which Flux no longer serves, and does not fit %s: %v; fix: rewrite it for %s (flux migrate)",
				what, gvk.GroupVersion(), m.to, strings.TrimPrefix(err.Error(), "strict decoding error: "), m.to)
		}
		o.SetAPIVersion(m.to.String())
		done = append(done, fmt.Sprintf("%s %s → %s", what, gvk.Version, m.to.Version))
	}
	sort.Strings(done)
	return done, nil
}
