package kbuild

import (
	"fmt"

	"github.com/drone/envsubst"
	"sigs.k8s.io/kustomize/api/resource"
	"sigs.k8s.io/yaml"
)

// SubstituteKey is the annotation or label that, set to SubstituteDisabled on a built object,
// leaves it out of postBuild substitution.
const (
	SubstituteKey      = "kustomize.toolkit.fluxcd.io/substitute"
	SubstituteDisabled = "disabled"
)

// substituteJSON returns res as JSON with ${VAR} and ${VAR:=default} replaced by vars (a
// variable that is not set becomes the empty string), or as built when vars is nil or res's
// annotation or label SubstituteKey is SubstituteDisabled. The substitution is done on res's
// YAML text, which keeps the quoting of the source: replicas: ${REPLICAS} becomes a number,
// value: "${VALUE}" stays a string.
func substituteJSON(res *resource.Resource, vars map[string]string) ([]byte, error) {
	if vars == nil || res.GetAnnotations()[SubstituteKey] == SubstituteDisabled || res.GetLabels()[SubstituteKey] == SubstituteDisabled {
		return res.MarshalJSON()
	}
	y, err := res.AsYAML()
	if err != nil {
		return nil, err
	}
	out, err := envsubst.Eval(string(y), func(name string) string { return vars[name] })
	if err != nil {
		return nil, fmt.Errorf("postBuild substitution: %w", err)
	}
	b, err := yaml.YAMLToJSON([]byte(out))
	if err != nil {
		return nil, fmt.Errorf("postBuild substitution: the result does not parse: %w", err)
	}
	return b, nil
}
