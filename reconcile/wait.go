package reconcile

import (
	"context"
	"fmt"
	"strings"

	"github.com/fluxcd/cli-utils/pkg/object"
	"github.com/fluxcd/pkg/apis/meta"
	"github.com/fluxcd/pkg/runtime/conditions"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Waiting on the Flux objects a Kustomization applies. Flux runs a worker per object, so a
// Kustomization that waits (spec.wait) for a HelmRelease it applied blocks one worker while
// another reconciles the release. sync reconciles every object of a pass in turn: waiting in
// place for an object that only a later turn reconciles would wait out the whole timeout. So the
// objects sync reconciles itself are not waited for; they are read once after the apply, and
// while any is not Ready the Kustomization is not Ready either (reason Progressing, naming
// them), which makes it due again on the next pass, and its dependents keep waiting for it
// (docs/reconcile.md, "Waiting").

// fluxGroups are the API groups of the kinds sync reconciles.
var fluxGroups = map[string]bool{
	"source.toolkit.fluxcd.io": true, "kustomize.toolkit.fluxcd.io": true, "helm.toolkit.fluxcd.io": true,
}

// reconciledHere says whether an applied object is of a kind sync itself reconciles.
func reconciledHere(m object.ObjMetadata) bool {
	return fluxGroups[m.GroupKind.Group] && kindNamed(m.GroupKind.Kind) != nil
}

// splitWait splits a wait set into the objects sync reconciles and the others.
func splitWait(set object.ObjMetadataSet) (here, others object.ObjMetadataSet) {
	for _, m := range set {
		if reconciledHere(m) {
			here = append(here, m)
		} else {
			others = append(others, m)
		}
	}
	return here, others
}

// notReady reads each object of set once and names those not Ready at their generation; ""
// when all are.
func (r *Reconciler) notReady(ctx context.Context, c client.Reader, set object.ObjMetadataSet) string {
	var waiting []string
	for _, m := range set {
		k := kindNamed(m.GroupKind.Kind)
		o := k.new()
		name := fmt.Sprintf("%s %s/%s", m.GroupKind.Kind, m.Namespace, m.Name)
		if err := c.Get(ctx, types.NamespacedName{Namespace: m.Namespace, Name: m.Name}, o.api()); err != nil {
			if apierrors.IsNotFound(err) {
				waiting = append(waiting, name+" (not found)")
				continue
			}
			waiting = append(waiting, fmt.Sprintf("%s (%v)", name, err))
			continue
		}
		obj := o.api()
		f := o.fields()
		switch {
		case *f.observedGeneration != obj.GetGeneration():
			waiting = append(waiting, name+" (not reconciled yet)")
		case !conditions.IsTrue(obj, meta.ReadyCondition):
			msg := conditions.GetMessage(obj, meta.ReadyCondition)
			if msg == "" {
				msg = "not Ready"
			}
			waiting = append(waiting, fmt.Sprintf("%s (%s)", name, msg))
		}
	}
	return strings.Join(waiting, "; ")
}
