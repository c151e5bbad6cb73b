package reconcile

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"

	helmv2 "github.com/fluxcd/helm-controller/api/v2"
	kustomizev1 "github.com/fluxcd/kustomize-controller/api/v1"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ferry-gitops/ferry/api"
	"github.com/ferry-gitops/ferry/bundle"
)

// Tenancy are the lockdown settings of a cluster shared by tenants (docs/tenancy.md), Flux's
// controller flags by other names. Nil Options.Tenancy: a cluster of one team, where an object
// that names no ServiceAccount runs as sync itself.
type Tenancy struct {
	// DefaultServiceAccount is the ServiceAccount, in the object's own namespace, that a
	// Kustomization or HelmRelease naming none is applied as (Flux's
	// --default-service-account). The objects of the bundle's signed cluster item are the
	// platform's: they run as sync when they name none. Empty: those naming none run as sync.
	DefaultServiceAccount string
	// NoCrossNamespaceRefs refuses a sourceRef, chart sourceRef, chartRef, dependsOn or
	// health check in another namespace than the object's (Flux's --no-cross-namespace-refs).
	NoCrossNamespaceRefs bool
	// AllowHelmHooks lets a tenant's HelmRelease run its chart's hooks; otherwise a chart with
	// hooks installs only when the HelmRelease disables them (install, upgrade and rollback
	// disableHooks) and runs no tests. The platform's HelmReleases run hooks as Flux does.
	AllowHelmHooks bool
}

// noHooks reports whether Helm hooks are off for the object named key: a tenant's, while
// Tenancy.AllowHelmHooks is not set.
func (r *Reconciler) noHooks(ctx context.Context, p *pass, key objKey) bool {
	return r.tenant(ctx, p, key) && !r.tenancy.AllowHelmHooks
}

// clusterDecls is what the bundle's cluster item (the platform's signed desired state) says
// of who is who: the Flux objects it holds are the platform's, its Tenant declarations grant
// items to tenants.
type clusterDecls struct {
	platform map[objKey]bool
	tenants  []tenantGrant
	err      error // why a Tenant declaration could not be read
}

// declarationsOf reads the declarations of a cluster item's objects.
func declarationsOf(objs []clusterObject) *clusterDecls {
	d := &clusterDecls{platform: map[objKey]bool{}}
	for _, o := range objs {
		if isTenant(o.obj) {
			g, err := parseTenant(o)
			if err != nil {
				d.err = err
				continue
			}
			d.tenants = append(d.tenants, g)
			continue
		}
		if gvk := o.obj.GroupVersionKind(); strings.HasSuffix(gvk.Group, ".toolkit.fluxcd.io") {
			d.platform[objKey{Kind: gvk.Kind, NamespacedName: types.NamespacedName{Namespace: o.obj.GetNamespace(), Name: o.obj.GetName()}}] = true
		}
	}
	return d
}

// declarations returns the declarations of the pass's bundle's cluster item: those ReconcileAll
// read while applying it, else read once per pass; none when the bundle carries no cluster
// item or it cannot be read (applyBundleObjects reports that).
func (p *pass) declarations(ctx context.Context) *clusterDecls {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.decls != nil {
		return p.decls
	}
	p.decls = declarationsOf(nil)
	if p.record == nil {
		return p.decls
	}
	for i := range p.record.Items {
		it := &p.record.Items[i]
		if it.Kind != bundle.KindCluster {
			continue
		}
		data, _, err := readClusterLayer(ctx, p.cache, it)
		if err != nil {
			return p.decls
		}
		objs, err := decodeClusterManifests(data)
		if err != nil {
			return p.decls
		}
		p.decls = declarationsOf(objs)
	}
	return p.decls
}

// tenant reports whether the object named key is a tenant's under lockdown: Options.Tenancy
// is set and the object is not of the bundle's cluster item.
func (r *Reconciler) tenant(ctx context.Context, p *pass, key objKey) bool {
	return r.tenancy != nil && (p == nil || !p.declarations(ctx).platform[key])
}

// actor returns the ServiceAccount (in the object's namespace) the object named key acts as:
// the one it names, else, for a tenant's object, Tenancy.DefaultServiceAccount; "" is sync
// itself.
func (r *Reconciler) actor(ctx context.Context, p *pass, key objKey, named string) string {
	if named != "" || !r.tenant(ctx, p, key) {
		return named
	}
	return r.tenancy.DefaultServiceAccount
}

// crossNamespace returns the outcome of an object of namespace ns whose references refs
// (what, namespace) leave it while Tenancy.NoCrossNamespaceRefs is set; ok when none does.
func (r *Reconciler) crossNamespace(ns string, refs [][2]string) (outcome, bool) {
	if r.tenancy == nil || !r.tenancy.NoCrossNamespaceRefs {
		return outcome{}, true
	}
	var out []string
	for _, ref := range refs {
		if ref[1] != "" && ref[1] != ns {
			out = append(out, ref[0]+" in namespace "+ref[1])
		}
	}
	if len(out) == 0 {
		return outcome{}, true
	}
	return outcome{reason: api.AccessDeniedReason, message: fmt.Sprintf("cross-namespace references are not allowed (tenancy.noCrossNamespaceRefs): %s; reference objects of namespace %s only", strings.Join(out, ", "), ns)}.terminal(), false
}

// kustomizationRefs are the references of k that may name another namespace.
func kustomizationRefs(k *kustomizev1.Kustomization) [][2]string {
	refs := [][2]string{{fmt.Sprintf("sourceRef %s/%s", k.Spec.SourceRef.Kind, k.Spec.SourceRef.Name), k.Spec.SourceRef.Namespace}}
	for _, d := range k.Spec.DependsOn {
		refs = append(refs, [2]string{"dependsOn " + d.Name, d.Namespace})
	}
	for _, hc := range k.Spec.HealthChecks {
		refs = append(refs, [2]string{fmt.Sprintf("healthChecks %s %s", hc.Kind, hc.Name), hc.Namespace})
	}
	return refs
}

// helmReleaseRefs are the references of h that may name another namespace.
func helmReleaseRefs(h *helmv2.HelmRelease) [][2]string {
	var refs [][2]string
	if h.Spec.Chart != nil {
		s := h.Spec.Chart.Spec.SourceRef
		refs = append(refs, [2]string{fmt.Sprintf("chart sourceRef %s/%s", s.Kind, s.Name), s.Namespace})
	}
	if c := h.Spec.ChartRef; c != nil {
		refs = append(refs, [2]string{fmt.Sprintf("chartRef %s/%s", c.Kind, c.Name), c.Namespace})
	}
	for _, d := range h.GetDependsOn() {
		refs = append(refs, [2]string{"dependsOn " + d.Name, d.Namespace})
	}
	return refs
}

// hookKinds matches a Helm hook annotation and its kinds.
var hookKinds = regexp.MustCompile(`helm\.sh/hook["']?\s*:\s*["']?([a-z0-9,\- ]+)`)

// chartHooks returns the templates of c and its subcharts that declare Helm hooks, with the
// hook kinds: test hooks apart from the others.
func chartHooks(c *chart.Chart) (hooks, tests []string) {
	var walk func(c *chart.Chart, prefix string)
	walk = func(c *chart.Chart, prefix string) {
		for _, t := range c.Templates {
			for _, m := range hookKinds.FindAllStringSubmatch(string(t.Data), -1) {
				for _, k := range strings.Split(m[1], ",") {
					k = strings.TrimSpace(k)
					switch {
					case k == "":
					case strings.HasPrefix(k, "test"):
						tests = append(tests, prefix+t.Name)
					default:
						hooks = append(hooks, prefix+t.Name+" ("+k+")")
					}
				}
			}
		}
		for _, d := range c.Dependencies() {
			walk(d, prefix+"charts/"+d.Name()+"/")
		}
	}
	walk(c, "")
	slices.Sort(hooks)
	slices.Sort(tests)
	return slices.Compact(hooks), slices.Compact(tests)
}

// hooksRefused returns the outcome of a tenant's HelmRelease h whose chart c has hooks while
// they are off (sync then runs every Helm action of h without hooks): the HelmRelease must say
// spec.install.disableHooks, so a chart whose hooks it needs is not installed broken without
// notice, and may not enable tests; ok when neither holds.
func hooksRefused(h *helmv2.HelmRelease, c *chart.Chart, sa string) (outcome, bool) {
	hooks, tests := chartHooks(c)
	var why []string
	if len(hooks) > 0 && (h.Spec.Install == nil || !h.Spec.Install.DisableHooks) {
		why = append(why, "the chart has hooks ("+strings.Join(hooks, ", ")+"): they would not run; set spec.install.disableHooks: true to release it without them")
	}
	if len(tests) > 0 && h.Spec.Test != nil && h.Spec.Test.Enable {
		why = append(why, "spec.test.enable runs the chart's test hooks ("+strings.Join(tests, ", ")+")")
	}
	if len(why) == 0 {
		return outcome{}, true
	}
	as := "sync"
	if sa != "" {
		as = "serviceaccount " + h.Namespace + "/" + sa
	}
	return outcome{reason: api.AccessDeniedReason, message: fmt.Sprintf("nothing released: Helm hooks are off for tenants (tenancy.allowHelmHooks), the release runs as %s: %s", as, strings.Join(why, "; "))}.terminal(), false
}

// TenantKind is the kind (apiVersion ferry.dev/v1alpha1) of a cluster item document that
// declares a tenant and the bundle items its sources may resolve to (docs/tenancy.md). sync
// reads it and does not apply it.
const TenantKind = "Tenant"

// TenantAPIVersion is a Tenant declaration's apiVersion.
const TenantAPIVersion = "ferry.dev/v1alpha1"

// tenantGrant is one Tenant declaration: a namespace and the items granted to it.
type tenantGrant struct {
	name, namespace string
	items           map[string]bool
}

// isTenant reports whether o is a Tenant declaration.
func isTenant(o *unstructured.Unstructured) bool {
	return o.GetAPIVersion() == TenantAPIVersion && o.GetKind() == TenantKind
}

// withoutTenants drops the Tenant declarations of a cluster item's objects.
func withoutTenants(objs []clusterObject) []clusterObject {
	out := objs[:0]
	for _, o := range objs {
		if !isTenant(o.obj) {
			out = append(out, o)
		}
	}
	return out
}

// parseTenant reads a Tenant declaration strictly: metadata.name, spec.namespace (default
// the name) and spec.items (item names), nothing else.
func parseTenant(o clusterObject) (tenantGrant, error) {
	bad := func(format string, args ...any) (tenantGrant, error) {
		return tenantGrant{}, fmt.Errorf("%s: %s", o.where(), fmt.Sprintf(format, args...))
	}
	for k := range o.obj.Object {
		if k != "apiVersion" && k != "kind" && k != "metadata" && k != "spec" {
			return bad("unknown field %q: a Tenant has metadata and spec {namespace, items}", k)
		}
	}
	g := tenantGrant{name: o.obj.GetName(), items: map[string]bool{}}
	if g.name == "" {
		return bad("metadata.name is required")
	}
	spec, ok := o.obj.Object["spec"].(map[string]any)
	if !ok {
		return bad("spec {namespace, items} is required")
	}
	for k, v := range spec {
		switch k {
		case "namespace":
			s, ok := v.(string)
			if !ok {
				return bad("spec.namespace: want a string")
			}
			g.namespace = s
		case "items":
			l, ok := v.([]any)
			if !ok {
				return bad("spec.items: want a list of item names")
			}
			for _, it := range l {
				s, ok := it.(string)
				if !ok || s == "" {
					return bad("spec.items: want item names")
				}
				g.items[s] = true
			}
		default:
			return bad("spec.%s: unknown field; known: namespace, items", k)
		}
	}
	if g.namespace == "" {
		g.namespace = g.name
	}
	return g, nil
}

// granted checks, for a tenant's source object named key, that the item its resolution res
// chose may be used in its namespace: an item granted to some tenants is theirs alone (and
// the platform's), and a tenant declared with items may use only those. It returns res, or an
// AccessDenied error naming the item, the tenants it is granted to, and the Tenant.
func (r *Reconciler) granted(ctx context.Context, p *pass, key objKey, res *resolved, err error) (*resolved, error) {
	if err != nil || res == nil || res.item == nil || !r.tenant(ctx, p, key) {
		return res, err
	}
	d := p.declarations(ctx)
	tenants, terr := d.tenants, d.err
	deny := func(format string, args ...any) (*resolved, error) {
		return nil, &sourceError{reason: api.AccessDeniedReason, msg: fmt.Sprintf("%s '%s' resolves to item %q: %s", key.Kind, key.NamespacedName, res.item.Name, fmt.Sprintf(format, args...))}
	}
	if terr != nil {
		return deny("the cluster item's Tenant declarations cannot be read, so no tenant's source resolves: %v", terr)
	}
	ns, item := key.Namespace, res.item.Name
	var owners []string
	for _, g := range tenants {
		if g.items[item] {
			if g.namespace == ns {
				return res, nil
			}
			owners = append(owners, g.name+" (namespace "+g.namespace+")")
		}
	}
	if len(owners) > 0 {
		return deny("the item is granted to tenant %s only (the cluster item's Tenant declarations)", strings.Join(owners, ", "))
	}
	for _, g := range tenants {
		if g.namespace == ns {
			return deny("tenant %s may use only the items its Tenant declaration grants: add %q to its spec.items", g.name, item)
		}
	}
	return res, nil
}
