package api

import (
	"embed"
	"fmt"
	"path"
	"sort"

	helmv2 "github.com/fluxcd/helm-controller/api/v2"
	kustomizev1 "github.com/fluxcd/kustomize-controller/api/v1"
	sourcev1 "github.com/fluxcd/source-controller/api/v1"
	swv1beta1 "github.com/fluxcd/source-watcher/api/v2/v1beta1"
	"k8s.io/apimachinery/pkg/runtime"
)

//go:embed crds/*.yaml
var crdFiles embed.FS

// CRDs returns the CustomResourceDefinitions of every kind sync reconciles, as YAML, in the
// order of their file names.
func CRDs() [][]byte {
	names, err := crdFiles.ReadDir("crds")
	if err != nil {
		panic(err) // embedded at build time
	}
	sort.Slice(names, func(i, j int) bool { return names[i].Name() < names[j].Name() })
	var out [][]byte
	for _, e := range names {
		b, err := crdFiles.ReadFile(path.Join("crds", e.Name()))
		if err != nil {
			panic(err)
		}
		out = append(out, b)
	}
	return out
}

// AddToScheme adds the Flux kinds sync reconciles to a scheme.
func AddToScheme(s *runtime.Scheme) error {
	for _, add := range []func(*runtime.Scheme) error{kustomizev1.AddToScheme, helmv2.AddToScheme, sourcev1.AddToScheme, swv1beta1.AddToScheme} {
		if err := add(s); err != nil {
			return fmt.Errorf("flux api scheme: %w", err)
		}
	}
	return nil
}
