package api_test

import (
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"

	"github.com/ferry-gitops/ferry/api"
)

// Every embedded CRD is for a kind the scheme knows, at the version the Go types are, served and
// stored, with the status subresource; and every kind sync reconciles has one.
func TestCRDsMatchTheScheme(t *testing.T) {
	s := runtime.NewScheme()
	if err := api.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{
		"kustomize.toolkit.fluxcd.io/v1/Kustomization": false, "helm.toolkit.fluxcd.io/v2/HelmRelease": false,
		"source.toolkit.fluxcd.io/v1/GitRepository": false, "source.toolkit.fluxcd.io/v1/OCIRepository": false,
		"source.toolkit.fluxcd.io/v1/HelmRepository": false, "source.toolkit.fluxcd.io/v1/HelmChart": false,
		"source.toolkit.fluxcd.io/v1/ExternalArtifact": false, "source.extensions.fluxcd.io/v1beta1/ArtifactGenerator": false,
	}
	for _, doc := range api.CRDs() {
		var crd apiextensionsv1.CustomResourceDefinition
		if err := yaml.UnmarshalStrict(doc, &crd); err != nil {
			t.Fatal(err)
		}
		for _, v := range crd.Spec.Versions {
			gvk := schema.GroupVersionKind{Group: crd.Spec.Group, Version: v.Name, Kind: crd.Spec.Names.Kind}
			key := gvk.Group + "/" + gvk.Version + "/" + gvk.Kind
			if _, ok := want[key]; !ok {
				t.Errorf("CRD %s: version %s is not a kind sync reconciles", crd.Name, v.Name)
				continue
			}
			if !s.Recognizes(gvk) {
				t.Errorf("CRD %s: %s is not in the scheme", crd.Name, key)
			}
			if !v.Served || !v.Storage || v.Subresources == nil || v.Subresources.Status == nil {
				t.Errorf("CRD %s %s: served %v storage %v subresources %+v", crd.Name, v.Name, v.Served, v.Storage, v.Subresources)
			}
			want[key] = true
		}
	}
	for k, found := range want {
		if !found {
			t.Errorf("no CRD for %s", k)
		}
	}
}
