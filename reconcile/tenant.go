package reconcile

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/fluxcd/cli-utils/pkg/kstatus/polling"
	"github.com/fluxcd/pkg/ssa"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferry-gitops/ferry/api"
)

// serviceAccountUser returns the user name Kubernetes gives the ServiceAccount ns/name.
func serviceAccountUser(ns, name string) string {
	return "system:serviceaccount:" + ns + ":" + name
}

// serviceAccountFound checks that the ServiceAccount ns/name exists in t; ok is true when it
// does or when name is empty, and otherwise out says why not (ServiceAccountNotFound, or
// failReason when it could not be read).
func (r *Reconciler) serviceAccountFound(ctx context.Context, t *target, ns, name, failReason string) (out outcome, ok bool) {
	if name == "" {
		return outcome{}, true
	}
	var sa corev1.ServiceAccount
	err := t.client.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &sa)
	switch {
	case err == nil:
		return outcome{}, true
	case apierrors.IsNotFound(err):
		return outcome{reason: api.ServiceAccountNotFoundReason, message: fmt.Sprintf("serviceaccount %s/%s not found%s", ns, name, t.in())}, false
	default:
		return outcome{reason: failReason, message: fmt.Sprintf("serviceaccount %s/%s%s: %v", ns, name, t.in(), err)}, false
	}
}

// restConfigAs returns t's REST config, impersonating the ServiceAccount ns/name (of t) when
// name is not empty.
func restConfigAs(t *target, ns, name string) *rest.Config {
	cfg := rest.CopyConfig(t.cfg)
	if name != "" {
		cfg.Impersonate = rest.ImpersonationConfig{UserName: serviceAccountUser(ns, name)}
	}
	return cfg
}

// clientAs returns t's client, or, when name is not empty, a client impersonating the
// ServiceAccount ns/name (sharing t's REST mapper).
func clientAs(t *target, ns, name string) (client.Client, error) {
	if name == "" {
		return t.client, nil
	}
	c, err := client.New(restConfigAs(t, ns, name), client.Options{Scheme: t.client.Scheme(), Mapper: t.client.RESTMapper()})
	if err != nil {
		return nil, fmt.Errorf("kubernetes client as serviceaccount %s/%s%s: %w", ns, name, t.in(), err)
	}
	return c, nil
}

// readerAs returns the client an object of namespace ns acting as ServiceAccount sa reads
// the ConfigMaps and Secrets its spec names with (substituteFrom, valuesFrom): impersonating
// sa, so a tenant reads only what its RBAC lets it read. Those objects are in the cluster
// sync runs in; when the object targets another cluster (where sa lives), they are read as
// sync.
func (r *Reconciler) readerAs(t *target, ns, sa string) (client.Reader, error) {
	if t.remote() {
		return r.client, nil
	}
	return clientAs(t, ns, sa)
}

// managerAs returns the resource manager objects are applied, pruned and waited for with in
// t: t's own, or, when name is not empty, one whose client impersonates the ServiceAccount
// ns/name (sharing t's REST mapper), so what it does is bound by the ServiceAccount's RBAC.
func managerAs(t *target, ns, name string) (*ssa.ResourceManager, error) {
	if name == "" {
		return t.manager, nil
	}
	c, err := clientAs(t, ns, name)
	if err != nil {
		return nil, err
	}
	poller := polling.NewStatusPoller(c, c.RESTMapper(), polling.Options{})
	return ssa.NewResourceManager(c, poller, ssa.Owner{Field: FieldManager, Group: OwnerGroup}), nil
}

// dryRun server-side applies every object of objs with dry run through c (the client k's
// objects are applied with) and returns an error naming every object the API server refused,
// and why. Two refusals are expected and let through, because the apply stages them: a
// namespaced object whose namespace is not found but is a Namespace of objs, and an object
// whose kind is not served but is defined by a CustomResourceDefinition of objs.
func dryRun(ctx context.Context, c client.Client, ns, sa string, objs []*unstructured.Unstructured) error {
	namespaces := map[string]bool{}
	kinds := map[schema.GroupKind]bool{}
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		switch {
		case gvk.Group == "" && gvk.Kind == "Namespace":
			namespaces[o.GetName()] = true
		case gvk.Group == "apiextensions.k8s.io" && gvk.Kind == "CustomResourceDefinition":
			group, _, _ := unstructured.NestedString(o.Object, "spec", "group")
			kind, _, _ := unstructured.NestedString(o.Object, "spec", "names", "kind")
			kinds[schema.GroupKind{Group: group, Kind: kind}] = true
		}
	}
	sorted := append([]*unstructured.Unstructured(nil), objs...)
	sort.Sort(ssa.SortableUnstructureds(sorted))
	var refused []string
	for _, o := range sorted {
		err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(o.DeepCopy()), client.DryRunAll, client.ForceOwnership, client.FieldOwner(FieldManager))
		if err == nil {
			continue
		}
		gvk := o.GroupVersionKind()
		if apierrors.IsNotFound(err) && o.GetNamespace() != "" && namespaces[o.GetNamespace()] {
			continue
		}
		if apimeta.IsNoMatchError(err) && kinds[gvk.GroupKind()] {
			continue
		}
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return fmt.Errorf("dry-run %s: %w", objectName(o), err)
		}
		refused = append(refused, objectName(o)+": "+refusal(c, ns, sa, o, err))
	}
	if len(refused) > 0 {
		return fmt.Errorf("dry-run refused %s", strings.Join(refused, "; "))
	}
	return nil
}

// refusal says why the API server refused o: the reason in lower case ("forbidden",
// "invalid") and the server's message; a refusal of a ServiceAccount's request says which
// ServiceAccount may not apply what where.
func refusal(c client.Client, ns, sa string, o *unstructured.Unstructured, err error) string {
	reason := strings.ToLower(string(apierrors.ReasonForError(err)))
	if reason == "" {
		return err.Error()
	}
	if apierrors.IsForbidden(err) && sa != "" {
		resource := strings.ToLower(o.GetKind())
		gvk := o.GroupVersionKind()
		if m, merr := c.RESTMapper().RESTMapping(gvk.GroupKind(), gvk.Version); merr == nil {
			resource = m.Resource.Resource
		}
		where := "at cluster scope"
		if o.GetNamespace() != "" {
			where = "in namespace " + o.GetNamespace()
		}
		return fmt.Sprintf("%s: serviceaccount %s/%s cannot apply %s %s (%s)", reason, ns, sa, resource, where, err.Error())
	}
	return reason + ": " + err.Error()
}

// objectName names an object as "<Kind> <namespace>/<name>", or "<Kind> <name>" when it is
// cluster-scoped.
func objectName(o *unstructured.Unstructured) string {
	if o.GetNamespace() == "" {
		return o.GetKind() + " " + o.GetName()
	}
	return o.GetKind() + " " + o.GetNamespace() + "/" + o.GetName()
}
