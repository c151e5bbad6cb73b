package reconcile

import (
	"context"
	"errors"
	"fmt"
	"maps"

	"sigs.k8s.io/controller-runtime/pkg/client"

	kustomizev1 "github.com/fluxcd/kustomize-controller/api/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ferry-gitops/ferry/kbuild"
)

// SubstituteKey is the annotation or label that, set to SubstituteDisabled on a built object,
// leaves it out of postBuild substitution (kbuild's, which does the substitution).
const (
	SubstituteKey      = kbuild.SubstituteKey
	SubstituteDisabled = kbuild.SubstituteDisabled
)

// substitutionVars returns the variables of k's postBuild: the data of each substituteFrom
// ConfigMap or Secret in order (a later one wins), then substitute over them. A missing object
// that is not optional is an error naming it.
func (r *Reconciler) substitutionVars(ctx context.Context, c client.Reader, k *kustomizev1.Kustomization) (map[string]string, error) {
	vars := map[string]string{}
	pb := k.Spec.PostBuild
	if pb == nil {
		return vars, nil
	}
	for _, ref := range pb.SubstituteFrom {
		key := types.NamespacedName{Namespace: k.Namespace, Name: ref.Name}
		d, ok, err := lookupRef(ctx, c, k.Namespace, ref.Kind, ref.Name, ref.Optional)
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
