package reconcile_test

import (
	"context"
	"strings"
	"testing"
	"time"

	helmv2 "github.com/fluxcd/helm-controller/api/v2"
	kustomizev1 "github.com/fluxcd/kustomize-controller/api/v1"
	"github.com/fluxcd/pkg/apis/meta"
	sourcev1 "github.com/fluxcd/source-controller/api/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferry-gitops/ferry/api"
	"github.com/ferry-gitops/ferry/fetch"
	"github.com/ferry-gitops/ferry/internal/testbundle"
	"github.com/ferry-gitops/ferry/reconcile"
	"github.com/ferry-gitops/ferry/spec"
)

// lockdownTenant creates namespace ns with ServiceAccounts default (no rights), cmonly (may
// manage ConfigMaps of ns) and deployer (ConfigMaps and Secrets of ns, what a Helm release
// there needs), a GitRepository "platform" and a HelmRepository "charts" of ns.
func lockdownTenant(t *testing.T, h *helmEnv, ns string) {
	t.Helper()
	ctx := context.Background()
	role := func(name string, resources ...string) *rbacv1.Role {
		return &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{""}, Resources: resources, Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}}}}
	}
	bind := func(sa, r string) *rbacv1.RoleBinding {
		return &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: sa + "-" + r},
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: r},
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: ns, Name: sa}}}
	}
	for _, o := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default"}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cmonly"}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "deployer"}},
		role("configmaps", "configmaps"), role("helm", "configmaps", "secrets"),
		bind("cmonly", "configmaps"), bind("deployer", "helm"),
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "platform-only"}, StringData: map[string]string{"password": "s3cret"}},
		&sourcev1.GitRepository{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "platform"}, Spec: sourcev1.GitRepositorySpec{
			URL: gitServer.RepoURL(h.repo), Reference: &sourcev1.GitRepositoryRef{Branch: "main"}, Interval: metav1.Duration{Duration: time.Minute}}},
		&sourcev1.HelmRepository{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "charts"}, Spec: sourcev1.HelmRepositorySpec{
			URL: h.charts.URL, Interval: metav1.Duration{Duration: time.Minute}}},
	} {
		if err := h.c.Create(ctx, o); err != nil {
			t.Fatalf("create %T %s: %v", o, o.GetName(), err)
		}
	}
	t.Cleanup(func() { removeAll(h.c, ns) })
}

// readyOf returns the Ready condition of obj (read into), failing without one.
func readyOf(t *testing.T, c client.Client, obj client.Object, ns, name string) metav1.Condition {
	t.Helper()
	if err := c.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, obj); err != nil {
		t.Fatal(err)
	}
	var conds []metav1.Condition
	switch o := obj.(type) {
	case *kustomizev1.Kustomization:
		conds = o.Status.Conditions
	case *helmv2.HelmRelease:
		conds = o.Status.Conditions
	}
	cond := apimeta.FindStatusCondition(conds, meta.ReadyCondition)
	if cond == nil {
		t.Fatalf("%s/%s has no Ready condition", ns, name)
	}
	return *cond
}

// With lockdown on (a default ServiceAccount, no cross-namespace references, no Helm hooks),
// tenant A tries to escape: each try is refused with Ready=False naming the object or the
// rule and the ServiceAccount, and nothing of it is applied. A's legitimate Kustomization and
// HelmRelease become Ready; the platform's Kustomization (of the signed cluster item, naming
// no ServiceAccount) runs as sync, while the same Kustomization made by hand runs as the
// namespace's default ServiceAccount.
func TestLockdown(t *testing.T) {
	ctx := context.Background()
	const a, b = "lock-a", "lock-b"
	h, _ := newHelmEnv(t, "lockdown", map[string]string{
		"own/kustomization.yaml":        kustomizationYAML("cm.yaml"),
		"own/cm.yaml":                   configMapYAML(a, "lock-own", "one"),
		"plain/kustomization.yaml":      kustomizationYAML("cm.yaml"),
		"plain/cm.yaml":                 configMapYAML("", "lock-plain", "one"),
		"kubesystem/kustomization.yaml": kustomizationYAML("k.yaml"),
		"kubesystem/k.yaml":             "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata:\n  name: escape\n  namespace: kube-system\nspec:\n  interval: 1m\n  prune: true\n  serviceAccountName: replicaset-controller\n  sourceRef: {kind: GitRepository, name: platform}\n",
		"subst/kustomization.yaml":      kustomizationYAML("cm.yaml"),
		"subst/cm.yaml":                 "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: lock-subst\n  namespace: " + a + "\ndata:\n  p: ${password}\n",
		"remote/kustomization.yaml":     "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- https://github.com/example/fleet//base?ref=main\n",
		"crb/kustomization.yaml":        kustomizationYAML("crb.yaml"),
		"crb/crb.yaml":                  "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: lock-escape\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}\nsubjects:\n- {kind: ServiceAccount, name: cmonly, namespace: " + a + "}\n",
		"ns/kustomization.yaml":         kustomizationYAML("ns.yaml"),
		"ns/ns.yaml":                    "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: lock-new\n",
		"crd/kustomization.yaml":        kustomizationYAML("crd.yaml"),
		"crd/crd.yaml":                  "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: escapes.lock.example.com\nspec:\n  group: lock.example.com\n  names: {kind: Escape, plural: escapes, singular: escape, listKind: EscapeList}\n  scope: Cluster\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    schema: {openAPIV3Schema: {type: object}}\n",
		"platform/kustomization.yaml":   kustomizationYAML("cm.yaml"),
		"platform/cm.yaml":              configMapYAML("", "lock-platform", "one"),
	})
	// Charts: "app" (no hooks) and "hooked" (a pre-install Job).
	h.addChart("1.0.0", nil)
	hook := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-hook\n  annotations:\n    \"helm.sh/hook\": pre-install,pre-upgrade\ndata: {x: y}\n"
	if _, err := h.charts.AddChart("hooked", "1.0.0", map[string]string{"configmap.yaml": chartTemplate, "hook.yaml": hook}, map[string]any{"greeting": "hi"}); err != nil {
		t.Fatal(err)
	}
	platformK := "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata:\n  name: platform\n  namespace: " + h.ns + "\nspec:\n  interval: 1m\n  prune: true\n  path: platform\n  targetNamespace: " + h.ns + "\n  sourceRef: {kind: GitRepository, name: platform}\n"
	// Tenant B's own repository, granted to B alone by the cluster item's Tenant declarations.
	if _, err := gitServer.CreateRepo(ctx, "lockdown-b", map[string]string{"plain/kustomization.yaml": kustomizationYAML("cm.yaml"), "plain/cm.yaml": configMapYAML("", "lock-stolen", "one")}); err != nil {
		t.Fatal(err)
	}
	tenants := "apiVersion: ferry.dev/v1alpha1\nkind: Tenant\nmetadata: {name: " + a + "}\nspec: {items: [platform, app, hooked]}\n---\n" +
		"apiVersion: ferry.dev/v1alpha1\nkind: Tenant\nmetadata: {name: " + b + "}\nspec: {namespace: " + b + ", items: [platform, team-b, app]}\n"
	platformSrc := "apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata:\n  name: platform\n  namespace: " + h.ns + "\nspec:\n  interval: 1m\n  url: " + gitServer.RepoURL(h.repo) + "\n  ref: {branch: main}\n"
	dir, l, bnd := h.nextBundle()
	teamB, err := fetch.Git(ctx, l, spec.Git{Name: "team-b", URL: gitServer.RepoURL("lockdown-b"), Ref: spec.GitRef{Branch: "main"}}, &fetch.Options{})
	if err != nil {
		t.Fatal(err)
	}
	bnd.Items = append(bnd.Items, teamB)
	for _, name := range []string{"app", "hooked"} {
		ch, err := fetch.Chart(ctx, l, spec.Chart{Name: name, Repository: h.charts.URL, Version: "1.0.0"}, &fetch.Options{})
		if err != nil {
			t.Fatal(err)
		}
		bnd.Items = append(bnd.Items, ch)
	}
	bnd.Items = append(bnd.Items, testbundle.ClusterItem(t, l, map[string]string{"platform.yaml": platformK + "---\n" + platformSrc, "tenants.yaml": tenants}))
	h.signAndImport(dir, l, bnd)
	lockdownTenant(t, h, a)
	lockdownTenant(t, h, b)
	if err := h.c.Create(ctx, &sourcev1.GitRepository{ObjectMeta: metav1.ObjectMeta{Namespace: a, Name: "stolen"}, Spec: sourcev1.GitRepositorySpec{
		URL: gitServer.RepoURL("lockdown-b"), Reference: &sourcev1.GitRepositoryRef{Branch: "main"}, Interval: metav1.Duration{Duration: time.Minute}}}); err != nil {
		t.Fatal(err)
	}
	cleanupKustomizations(t, h.c, a, b, "kube-system")

	r, err := reconcile.New(cluster.Config, h.cacheDir, reconcile.Options{Tenancy: &reconcile.Tenancy{DefaultServiceAccount: "default", NoCrossNamespaceRefs: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	ks := func(name, path, sa string, edit func(*kustomizev1.Kustomization)) *kustomizev1.Kustomization {
		k := &kustomizev1.Kustomization{ObjectMeta: metav1.ObjectMeta{Namespace: a, Name: name}, Spec: kustomizev1.KustomizationSpec{
			SourceRef: kustomizev1.CrossNamespaceSourceReference{Kind: sourcev1.GitRepositoryKind, Name: "platform"},
			Path:      path, Interval: metav1.Duration{Duration: time.Minute}, Prune: true, ServiceAccountName: sa, TargetNamespace: a}}
		if edit != nil {
			edit(k)
		}
		return k
	}
	hr := func(name, chart, sa string, edit func(*helmv2.HelmRelease)) *helmv2.HelmRelease {
		x := &helmv2.HelmRelease{ObjectMeta: metav1.ObjectMeta{Namespace: a, Name: name}, Spec: helmv2.HelmReleaseSpec{
			Chart: &helmv2.HelmChartTemplate{Spec: helmv2.HelmChartTemplateSpec{Chart: chart, Version: "1.0.0",
				SourceRef: helmv2.CrossNamespaceObjectReference{Kind: sourcev1.HelmRepositoryKind, Name: "charts"}}},
			Install: &helmv2.Install{DisableWait: true}, Interval: metav1.Duration{Duration: time.Minute},
			Timeout: &metav1.Duration{Duration: 30 * time.Second}, ServiceAccountName: sa}}
		if edit != nil {
			edit(x)
		}
		return x
	}
	type escape struct {
		name   string
		obj    client.Object
		reason string
		parts  []string
		absent []types.NamespacedName // objects it must not have made (cluster-scoped: no namespace)
		kind   client.Object          // the kind of absent
	}
	cm := &corev1.ConfigMap{}
	escapes := []escape{
		{"no serviceAccountName", ks("nosa", "plain", "", nil), meta.ReconciliationFailedReason,
			[]string{"nothing applied", "serviceaccount " + a + "/default cannot apply configmaps"}, []types.NamespacedName{{Namespace: a, Name: "lock-plain"}}, cm},
		{"a Kustomization into kube-system naming a privileged account", ks("kubesystem", "kubesystem", "cmonly", func(k *kustomizev1.Kustomization) { k.Spec.TargetNamespace = "" }),
			meta.ReconciliationFailedReason, []string{"Kustomization kube-system/escape: forbidden", "serviceaccount " + a + "/cmonly"}, []types.NamespacedName{{Namespace: "kube-system", Name: "escape"}}, &kustomizev1.Kustomization{}},
		{"targetNamespace into tenant B", ks("intob", "plain", "cmonly", func(k *kustomizev1.Kustomization) { k.Spec.TargetNamespace = b }),
			meta.ReconciliationFailedReason, []string{"ConfigMap " + b + "/lock-plain: forbidden", "serviceaccount " + a + "/cmonly cannot apply configmaps in namespace " + b}, []types.NamespacedName{{Namespace: b, Name: "lock-plain"}}, cm},
		{"dependsOn B's Kustomization", ks("depb", "plain", "cmonly", func(k *kustomizev1.Kustomization) {
			k.Spec.DependsOn = []kustomizev1.DependencyReference{{Name: "app", Namespace: b}}
		}), api.AccessDeniedReason, []string{"tenancy.noCrossNamespaceRefs", "dependsOn app in namespace " + b}, []types.NamespacedName{{Namespace: a, Name: "lock-plain"}}, cm},
		{"healthChecks on B's Deployment", ks("hcb", "plain", "cmonly", func(k *kustomizev1.Kustomization) {
			k.Spec.HealthChecks = []meta.NamespacedObjectKindReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: "web", Namespace: b}}
		}), api.AccessDeniedReason, []string{"healthChecks Deployment web in namespace " + b}, []types.NamespacedName{{Namespace: a, Name: "lock-plain"}}, cm},
		{"B's GitRepository", ks("srcb", "plain", "cmonly", func(k *kustomizev1.Kustomization) { k.Spec.SourceRef.Namespace = b }),
			api.AccessDeniedReason, []string{"sourceRef GitRepository/platform in namespace " + b}, []types.NamespacedName{{Namespace: a, Name: "lock-plain"}}, cm},
		{"B's Git item, through a GitRepository of A's own", ks("stolen", "plain", "cmonly", func(k *kustomizev1.Kustomization) { k.Spec.SourceRef.Name = "stolen" }),
			api.AccessDeniedReason, []string{`GitRepository '` + a + `/stolen' resolves to item "team-b"`, "granted to tenant " + b + " (namespace " + b + ") only"}, []types.NamespacedName{{Namespace: a, Name: "lock-stolen"}}, cm},
		{"substituteFrom a Secret the tenant may not read", ks("subst", "subst", "cmonly", func(k *kustomizev1.Kustomization) {
			k.Spec.PostBuild = &kustomizev1.PostBuild{SubstituteFrom: []kustomizev1.SubstituteReference{{Kind: "Secret", Name: "platform-only"}}}
		}), meta.BuildFailedReason, []string{"substituteFrom Secret " + a + "/platform-only", "system:serviceaccount:" + a + ":cmonly", "forbidden"}, []types.NamespacedName{{Namespace: a, Name: "lock-subst"}}, cm},
		{"a remote base", ks("remote", "remote", "cmonly", nil), meta.BuildFailedReason, []string{"remote"}, nil, cm},
		{"a ClusterRoleBinding", ks("crb", "crb", "cmonly", nil), meta.ReconciliationFailedReason,
			[]string{"ClusterRoleBinding lock-escape: forbidden", "serviceaccount " + a + "/cmonly cannot apply clusterrolebindings at cluster scope"}, []types.NamespacedName{{Name: "lock-escape"}}, &rbacv1.ClusterRoleBinding{}},
		{"a Namespace", ks("ns", "ns", "cmonly", func(k *kustomizev1.Kustomization) { k.Spec.TargetNamespace = "" }), meta.ReconciliationFailedReason,
			[]string{"Namespace lock-new: forbidden", "serviceaccount " + a + "/cmonly"}, []types.NamespacedName{{Name: "lock-new"}}, &corev1.Namespace{}},
		{"a CustomResourceDefinition", ks("crd", "crd", "cmonly", nil), meta.ReconciliationFailedReason,
			[]string{"CustomResourceDefinition escapes.lock.example.com: forbidden", "serviceaccount " + a + "/cmonly"}, nil, cm},
		{"a HelmRelease with hooks", hr("hooked", "hooked", "deployer", nil), api.AccessDeniedReason,
			[]string{"Helm hooks are off for tenants", "serviceaccount " + a + "/deployer", "hook.yaml (pre-install)", "spec.install.disableHooks"}, []types.NamespacedName{{Namespace: a, Name: "hooked-cm"}}, cm},
		{"valuesFrom a Secret the tenant may not read", hr("values", "app", "cmonly", func(x *helmv2.HelmRelease) {
			x.Spec.ValuesFrom = []helmv2.ValuesReference{{Kind: "Secret", Name: "platform-only", ValuesKey: "password"}}
		}), api.ValuesFailedReason, []string{"valuesFrom Secret " + a + "/platform-only", "system:serviceaccount:" + a + ":cmonly", "forbidden"}, []types.NamespacedName{{Namespace: a, Name: "values-cm"}}, cm},
		{"a HelmRelease on B's HelmRepository", hr("chartb", "app", "deployer", func(x *helmv2.HelmRelease) { x.Spec.Chart.Spec.SourceRef.Namespace = b }),
			api.AccessDeniedReason, []string{"chart sourceRef HelmRepository/charts in namespace " + b}, []types.NamespacedName{{Namespace: a, Name: "chartb-cm"}}, cm},
	}
	for _, e := range escapes {
		if err := h.c.Create(ctx, e.obj); err != nil {
			t.Fatalf("%s: create: %v", e.name, err)
		}
	}
	legit := ks("legit", "own", "cmonly", nil)
	legitHR := hr("legit", "app", "deployer", nil)
	hookedOK := hr("hooksoff", "hooked", "deployer", func(x *helmv2.HelmRelease) { x.Spec.Install.DisableHooks = true })
	byHand := &kustomizev1.Kustomization{ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: "byhand"}, Spec: kustomizev1.KustomizationSpec{
		SourceRef: kustomizev1.CrossNamespaceSourceReference{Kind: sourcev1.GitRepositoryKind, Name: "platform"},
		Path:      "platform", Interval: metav1.Duration{Duration: time.Minute}, Prune: true, TargetNamespace: h.ns, NameSuffix: "-byhand"}}
	for _, o := range []client.Object{legit, legitHR, hookedOK, byHand} {
		if err := h.c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.ReconcileAll(ctx); err == nil {
		t.Fatal("ReconcileAll succeeded with every escape")
	}
	if err := r.ReconcileAll(ctx); err == nil { // the platform Kustomization, applied by the first pass
		t.Fatal("ReconcileAll succeeded with every escape")
	}
	for _, e := range escapes {
		var c metav1.Condition
		switch e.obj.(type) {
		case *kustomizev1.Kustomization:
			c = readyOf(t, h.c, &kustomizev1.Kustomization{}, a, e.obj.GetName())
		default:
			c = readyOf(t, h.c, &helmv2.HelmRelease{}, a, e.obj.GetName())
		}
		if c.Status != metav1.ConditionFalse || c.Reason != e.reason {
			t.Errorf("%s: Ready %s %s %q, want False %s", e.name, c.Status, c.Reason, c.Message, e.reason)
			continue
		}
		for _, p := range e.parts {
			if !strings.Contains(c.Message, p) {
				t.Errorf("%s: message %q does not say %q", e.name, c.Message, p)
			}
		}
		if strings.Contains(c.Message, "s3cret") {
			t.Errorf("%s: the Secret's value is in the message: %q", e.name, c.Message)
		}
		for _, n := range e.absent {
			obj := e.kind.DeepCopyObject().(client.Object)
			if err := h.c.Get(ctx, n, obj); err == nil {
				t.Errorf("%s: %T %s was applied", e.name, obj, n)
			}
		}
	}
	if err := h.c.Get(ctx, types.NamespacedName{Name: "escapes.lock.example.com"}, &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: "apiextensions.k8s.io/v1", Kind: "CustomResourceDefinition"}}); err == nil {
		t.Error("the tenant's CRD was applied")
	}
	for _, want := range []struct {
		obj       client.Object
		ns, name  string
		ready     bool
		msg, cmNS string
		cm        string
	}{
		{&kustomizev1.Kustomization{}, a, "legit", true, "Applied revision", a, "lock-own"},
		{&helmv2.HelmRelease{}, a, "legit", true, "chart version 1.0.0", a, "legit-cm"},
		{&helmv2.HelmRelease{}, a, "hooksoff", true, "chart version 1.0.0", a, "hooksoff-cm"},
		{&kustomizev1.Kustomization{}, h.ns, "platform", true, "Applied revision", h.ns, "lock-platform"},
		{&kustomizev1.Kustomization{}, h.ns, "byhand", false, "serviceaccount " + h.ns + "/default not found", h.ns, "lock-platform-byhand"},
	} {
		c := readyOf(t, h.c, want.obj, want.ns, want.name)
		if (c.Status == metav1.ConditionTrue) != want.ready || !strings.Contains(c.Message, want.msg) {
			t.Errorf("%T %s/%s: Ready %s %s %q, want ready=%v saying %q", want.obj, want.ns, want.name, c.Status, c.Reason, c.Message, want.ready, want.msg)
		}
		_, ok := h.configMap(want.cmNS, want.cm)
		if ok != want.ready {
			t.Errorf("%T %s/%s: ConfigMap %s/%s exists: %v", want.obj, want.ns, want.name, want.cmNS, want.cm, ok)
		}
	}
	// Hooks are off for the tenant even when its release is allowed: the hook did not run.
	if _, ok := h.configMap(a, "hooksoff-hook"); ok {
		t.Error("the tenant's pre-install hook ran")
	}
}
