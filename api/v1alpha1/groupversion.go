package v1alpha1

import (
	_ "embed"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Group and Version of Ferry's API.
const (
	Group   = "ferry.dev"
	Version = "v1alpha1"
)

// GroupVersion is ferry.dev/v1alpha1.
var GroupVersion = schema.GroupVersion{Group: Group, Version: Version}

// KustomizationCRD is the CustomResourceDefinition of Kustomization, as YAML.
//
//go:embed crds/ferry.dev_kustomizations.yaml
var KustomizationCRD []byte

// HelmReleaseCRD is the CustomResourceDefinition of HelmRelease, as YAML.
//
//go:embed crds/ferry.dev_helmreleases.yaml
var HelmReleaseCRD []byte

// CRDs returns every CRD of Ferry's API, as YAML.
func CRDs() [][]byte { return [][]byte{KustomizationCRD, HelmReleaseCRD} }

var (
	// SchemeBuilder registers Ferry's types.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)
	// AddToScheme adds Ferry's types to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &Kustomization{}, &KustomizationList{}, &HelmRelease{}, &HelmReleaseList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
