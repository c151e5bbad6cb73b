package reconcile

import (
	"context"
	"errors"
	"fmt"
	"maps"

	"github.com/drone/envsubst"
	kustomizev1 "github.com/fluxcd/kustomize-controller/api/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/kustomize/api/resource"
	"sigs.k8s.io/yaml"
)

// SubstituteKey is the annotation or label that, set to SubstituteDisabled on a built object,
// leaves it out of postBuild substitution.
const (
	SubstituteKey      = "kustomize.toolkit.fluxcd.io/substitute"
	SubstituteDisabled = "disabled"
)

// substitutionVars returns the variables of k's postBuild: the data of each substituteFrom
// ConfigMap or Secret in order (a later one wins), then substitute over them. A missing object
// that is not optional is an error naming it.
func (r *Reconciler) substitutionVars(ctx context.Context, k *kustomizev1.Kustomization) (map[string]string, error) {
	vars := map[string]string{}
	pb := k.Spec.PostBuild
	if pb == nil {
		return vars, nil
	}
	for _, ref := range pb.SubstituteFrom {
		key := types.NamespacedName{Namespace: k.Namespace, Name: ref.Name}
		d, ok, err := r.lookupRef(ctx, k.Namespace, ref.Kind, ref.Name, ref.Optional)
		switch {
		case errors.Is(err, errRefKind):
			return nil, terminalError{fmt.Errorf("substituteFrom %s %s: %w", ref.Kind, key, err)}
		case err != nil:
			return nil, fmt.Errorf("substituteFrom %s %s: %w", ref.Kind, key, err)
		case !ok:
			continue
		}
		for n, v := range d.data { // a ConfigMap's binaryData is not substituted
			vars[n] = string(v)
		}
	}
	maps.Copy(vars, pb.Substitute)
	return vars, nil
}

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
