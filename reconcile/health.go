package reconcile

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/fluxcd/cli-utils/pkg/object"
	kustomizev1 "github.com/fluxcd/kustomize-controller/api/v1"
	"github.com/fluxcd/pkg/ssa"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// healthCheck waits up to timeout, through mgr, for the objects of k's healthChecks to be
// Current (kstatus). It returns "" when they are, and otherwise names them and says why not.
// A namespaced object without a namespace is looked for in the Kustomization's namespace.
func (r *Reconciler) healthCheck(ctx context.Context, mgr *ssa.ResourceManager, k *kustomizev1.Kustomization, timeout time.Duration) string {
	var (
		set   object.ObjMetadataSet
		names []string
	)
	for _, hc := range k.Spec.HealthChecks {
		gv, err := schema.ParseGroupVersion(hc.APIVersion)
		if err != nil {
			return fmt.Sprintf("health check %s %s: apiVersion %q: %v", hc.Kind, hc.Name, hc.APIVersion, err)
		}
		gk := schema.GroupKind{Group: gv.Group, Kind: hc.Kind}
		ns := hc.Namespace
		m, err := mgr.Client().RESTMapper().RESTMapping(gk, gv.Version)
		if err != nil {
			return fmt.Sprintf("health check %s %s: %v", hc.Kind, hc.Name, err)
		}
		if m.Scope.Name() == apimeta.RESTScopeNameNamespace {
			if ns == "" {
				ns = k.Namespace
			}
		} else {
			ns = ""
		}
		set = append(set, object.ObjMetadata{GroupKind: gk, Namespace: ns, Name: hc.Name})
		if ns == "" {
			names = append(names, hc.Kind+" "+hc.Name)
		} else {
			names = append(names, hc.Kind+" "+ns+"/"+hc.Name)
		}
	}
	wo := ssa.WaitOptions{Interval: time.Second, Timeout: timeout}
	if err := mgr.WaitForSetWithContext(ctx, set, wo); err != nil {
		return fmt.Sprintf("health check of %s failed: %v", strings.Join(names, ", "), err)
	}
	return ""
}
