package reconcile_test

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/fluxcd/pkg/apis/meta"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferry-gitops/ferry/internal/testenv"
	"github.com/ferry-gitops/ferry/reconcile"
)

// startSpoke starts another API server (a spoke the reconciler reaches only through a
// kubeconfig) and stores its kubeconfig in Secret name of e's namespace, under key "value";
// it returns a client of the spoke.
func startSpoke(t *testing.T, e *env, name string) (client.Client, *testenv.Cluster) {
	t.Helper()
	spoke, err := testenv.StartCluster(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { spoke.Stop() })
	kubeconfig, err := os.ReadFile(spoke.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: name}, Data: map[string][]byte{"value": kubeconfig}}
	if err := e.c.Create(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	sc, err := client.New(spoke.Config, client.Options{Scheme: e.c.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	return sc, spoke
}

// exists reports whether the object key of obj's type is in the cluster c reaches.
func exists(t *testing.T, c client.Client, key types.NamespacedName, obj client.Object) bool {
	t.Helper()
	err := c.Get(context.Background(), key, obj)
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	return err == nil
}

// spec.kubeConfig.secretRef: a Kustomization applies, prunes and impersonates in the cluster
// its Secret's kubeconfig reaches, while its status, source and inventory stay where it is;
// nothing lands in the cluster sync runs in. A HelmRelease releases there (Helm's storage
// too). A missing Secret applies nothing anywhere.
func TestRemoteTarget(t *testing.T) {
	ctx := context.Background()
	e, c1 := newHelmEnv(t, "remote", map[string]string{
		"spoke/kustomization.yaml":  kustomizationYAML("ns.yaml", "a.yaml", "b.yaml"),
		"spoke/ns.yaml":             "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: on-spoke\n",
		"spoke/a.yaml":              configMapYAML("on-spoke", "remote-a", "one"),
		"spoke/b.yaml":              configMapYAML("on-spoke", "remote-b", "one"),
		"tenant/kustomization.yaml": kustomizationYAML("cm.yaml"),
		"tenant/cm.yaml":            configMapYAML("on-spoke", "remote-tenant", "one"),
	})
	e.addChart("1.0.0", nil)
	e.importCharts("1.0.0")
	spoke, _ := startSpoke(t, e.env, "spoke-kubeconfig")
	kc := &meta.KubeConfigReference{SecretRef: &meta.SecretKeyReference{Name: "spoke-kubeconfig"}}

	k := e.kustomization("spoke", "spoke", true)
	k.Spec.KubeConfig = kc
	e.create(k)
	if err := e.r.Reconcile(ctx, types.NamespacedName{Namespace: e.ns, Name: "spoke"}); err != nil {
		t.Fatal(err)
	}
	got := e.expectReady("spoke", c1)
	if n := len(got.Status.Inventory.Entries); n != 3 {
		t.Fatalf("inventory on the hub has %d entries, want 3: %v", n, got.Status.Inventory.Entries)
	}
	for _, n := range []string{"remote-a", "remote-b"} {
		var cm corev1.ConfigMap
		if !exists(t, spoke, types.NamespacedName{Namespace: "on-spoke", Name: n}, &cm) {
			t.Fatalf("ConfigMap on-spoke/%s is not on the spoke", n)
		}
		if cm.Labels["kustomize.toolkit.fluxcd.io/name"] != "spoke" {
			t.Fatalf("ConfigMap %s on the spoke lacks the owner labels: %v", n, cm.Labels)
		}
	}
	if exists(t, e.c, types.NamespacedName{Name: "on-spoke"}, &corev1.Namespace{}) {
		t.Fatal("Namespace on-spoke was created in the cluster sync runs in")
	}

	// Pruning happens on the spoke.
	c2 := e.commit(map[string]string{"spoke/kustomization.yaml": kustomizationYAML("ns.yaml", "a.yaml"), "spoke/b.yaml": ""})
	e.importCharts("1.0.0")
	if err := e.r.Reconcile(ctx, types.NamespacedName{Namespace: e.ns, Name: "spoke"}); err != nil {
		t.Fatal(err)
	}
	e.expectReady("spoke", c2)
	if exists(t, spoke, types.NamespacedName{Namespace: "on-spoke", Name: "remote-b"}, &corev1.ConfigMap{}) {
		t.Fatal("ConfigMap remote-b was not pruned from the spoke")
	}

	// serviceAccountName names an account on the spoke (there is none on the hub): it is
	// impersonated there, bound by the spoke's RBAC.
	for _, o := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: e.ns}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: "spoke-deployer"}},
		&rbacv1.Role{
			ObjectMeta: metav1.ObjectMeta{Namespace: "on-spoke", Name: "configmaps"},
			Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}}},
		},
		&rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: "on-spoke", Name: "spoke-deployer"},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "configmaps"},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: e.ns, Name: "spoke-deployer"}},
		},
	} {
		if err := spoke.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	tk := e.kustomization("tenant", "tenant", true)
	tk.Spec.KubeConfig = kc
	tk.Spec.ServiceAccountName = "spoke-deployer"
	e.create(tk)
	if err := e.r.Reconcile(ctx, types.NamespacedName{Namespace: e.ns, Name: "tenant"}); err != nil {
		t.Fatal(err)
	}
	e.expectReady("tenant", c2)
	var cm corev1.ConfigMap
	if !exists(t, spoke, types.NamespacedName{Namespace: "on-spoke", Name: "remote-tenant"}, &cm) {
		t.Fatal("the tenant's ConfigMap is not on the spoke")
	}
	if m := cm.ManagedFields; len(m) == 0 || m[0].Manager != reconcile.FieldManager {
		t.Fatalf("the tenant's ConfigMap managed fields %v", m)
	}

	// A HelmRelease on the spoke: the release and its storage are there.
	hr := e.helmRelease("app", `{"greeting":"spoke"}`)
	hr.Spec.KubeConfig = kc
	e.createHR(hr)
	if err := e.r.ReconcileHelmRelease(ctx, types.NamespacedName{Namespace: e.ns, Name: "app"}); err != nil {
		t.Fatal(err)
	}
	e.expectHR("app", true, meta.ReconciliationSucceededReason, "1.0.0", []string{"1:1.0.0:deployed"})
	relCM := types.NamespacedName{Namespace: "default", Name: e.ns + "-app-cm"}
	if !exists(t, spoke, relCM, &cm) || cm.Data["greeting"] != "spoke" {
		t.Fatalf("the release's ConfigMap on the spoke: %v", cm.Data)
	}
	if exists(t, e.c, relCM, &corev1.ConfigMap{}) {
		t.Fatal("the release's ConfigMap is in the cluster sync runs in")
	}
	var secrets corev1.SecretList
	if err := spoke.List(ctx, &secrets, client.InNamespace("default"), client.MatchingLabels{"owner": "helm"}); err != nil || len(secrets.Items) != 1 {
		t.Fatalf("Helm's release Secrets on the spoke: %d (%v)", len(secrets.Items), err)
	}
	// Drift on the spoke is corrected.
	cm.Data["greeting"] = "by-hand"
	if err := spoke.Update(ctx, &cm); err != nil {
		t.Fatal(err)
	}
	if err := e.r.ReconcileHelmRelease(ctx, types.NamespacedName{Namespace: e.ns, Name: "app"}); err != nil {
		t.Fatal(err)
	}
	if exists(t, spoke, relCM, &cm); cm.Data["greeting"] != "spoke" {
		t.Fatalf("drift on the spoke not corrected: %v", cm.Data)
	}

	// Deleting the HelmRelease uninstalls from the spoke.
	if err := e.c.Delete(ctx, hr); err != nil {
		t.Fatal(err)
	}
	if err := e.r.ReconcileAll(ctx); err != nil {
		t.Logf("ReconcileAll: %v", err)
	}
	if exists(t, spoke, relCM, &corev1.ConfigMap{}) {
		t.Fatal("the deleted HelmRelease's ConfigMap is still on the spoke")
	}

	// A Kustomization whose Secret is missing applies nothing, and says what to create.
	missing := e.kustomization("missing", "tenant", true)
	missing.Spec.KubeConfig = &meta.KubeConfigReference{SecretRef: &meta.SecretKeyReference{Name: "nowhere"}}
	e.create(missing)
	if err := e.r.Reconcile(ctx, types.NamespacedName{Namespace: e.ns, Name: "missing"}); err == nil {
		t.Fatal("Reconcile with a missing kubeconfig Secret succeeded")
	}
	e.expectNotReady("missing", meta.ReconciliationFailedReason, "nothing applied", "Secret "+e.ns+"/nowhere not found", `key "value"`)
}

// A kubeconfig Secret (a tenant may write it) that would make sync run a program, read its
// own files, skip TLS verification or act as someone else is refused by name, in status, and
// nothing is applied.
func TestRemoteTargetRefusedKubeconfig(t *testing.T) {
	ctx := context.Background()
	e, _ := newEnv(t, "remote-refused", map[string]string{
		"x/kustomization.yaml": kustomizationYAML("cm.yaml"),
		"x/cm.yaml":            configMapYAML("default", "remote-refused-cm", "one"),
	})
	e.importBundle()
	kubeconfig := `apiVersion: v1
kind: Config
current-context: c
contexts: [{name: c, context: {cluster: c, user: u}}]
clusters: [{name: c, cluster: {server: "` + cluster.Config.Host + `"}}]
users: [{name: u, user: {tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token}}]
`
	if err := e.c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: "kc"}, Data: map[string][]byte{"value.yaml": []byte(kubeconfig)}}); err != nil {
		t.Fatal(err)
	}
	k := e.kustomization("x", "x", true)
	k.Spec.KubeConfig = &meta.KubeConfigReference{SecretRef: &meta.SecretKeyReference{Name: "kc"}}
	e.create(k)
	if err := e.r.Reconcile(ctx, types.NamespacedName{Namespace: e.ns, Name: "x"}); err == nil {
		t.Fatal("Reconcile with a tokenFile kubeconfig succeeded")
	}
	e.expectNotReady("x", meta.ReconciliationFailedReason, "nothing applied", "Secret "+e.ns+"/kc", "users[].user.tokenFile")
	if _, ok := e.configMap("default", "remote-refused-cm"); ok {
		t.Fatal("the ConfigMap was applied although the kubeconfig was refused")
	}
}

func TestRemoteConfig(t *testing.T) {
	const head = "apiVersion: v1\nkind: Config\ncurrent-context: c\ncontexts: [{name: c, context: {cluster: c, user: u}}]\n"
	const server = "clusters: [{name: c, cluster: {server: \"https://127.0.0.1:6443\", certificate-authority-data: " + "\"\"" + "}}]\n"
	cases := []struct {
		name, kubeconfig, want string
	}{
		{"token", head + server + "users: [{name: u, user: {token: abc}}]\n", ""},
		{"no current context", "apiVersion: v1\nkind: Config\n", "no current-context"},
		{"unknown context", "apiVersion: v1\nkind: Config\ncurrent-context: d\n", `current-context "d" is not among`},
		{"unknown cluster", head + "users: [{name: u, user: {token: abc}}]\n", `cluster "c" is not in`},
		{"plain http", head + "clusters: [{name: c, cluster: {server: \"http://127.0.0.1:6443\"}}]\nusers: [{name: u, user: {token: abc}}]\n", "is not an https:// URL"},
		{"exec", head + server + "users: [{name: u, user: {exec: {apiVersion: client.authentication.k8s.io/v1, command: /bin/sh}}}]\n", "users[].user.exec"},
		{"auth provider", head + server + "users: [{name: u, user: {auth-provider: {name: oidc}}}]\n", "users[].user.auth-provider"},
		{"token file", head + server + "users: [{name: u, user: {tokenFile: /etc/passwd}}]\n", "users[].user.tokenFile"},
		{"client key file", head + server + "users: [{name: u, user: {client-certificate: /c, client-key: /k}}]\n", "client-certificate/client-key"},
		{"impersonation", head + server + "users: [{name: u, user: {token: abc, as: admin}}]\n", "users[].user.as"},
		{"insecure", head + "clusters: [{name: c, cluster: {server: \"https://127.0.0.1:6443\", insecure-skip-tls-verify: true}}]\nusers: [{name: u, user: {token: abc}}]\n", "insecure-skip-tls-verify"},
		{"ca file", head + "clusters: [{name: c, cluster: {server: \"https://127.0.0.1:6443\", certificate-authority: /etc/ca.crt}}]\nusers: [{name: u, user: {token: abc}}]\n", "certificate-authority ("},
		{"proxy", head + "clusters: [{name: c, cluster: {server: \"https://127.0.0.1:6443\", proxy-url: \"http://10.0.0.1:3128\"}}]\nusers: [{name: u, user: {token: abc}}]\n", "proxy-url"},
		{"not yaml", "{{{", "parse the kubeconfig"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := reconcile.RemoteConfig([]byte(tc.kubeconfig))
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if cfg.Host != "https://127.0.0.1:6443" || cfg.BearerToken != "abc" {
					t.Fatalf("config %s %q", cfg.Host, cfg.BearerToken)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("RemoteConfig: %v, want an error saying %q", err, tc.want)
			}
		})
	}
}

// FuzzRemoteConfig feeds kubeconfig Secrets' bytes to the parser: it never panics, and a
// config it accepts reaches an https server with no program, file or proxy in it.
func FuzzRemoteConfig(f *testing.F) {
	f.Add([]byte("apiVersion: v1\nkind: Config\ncurrent-context: c\ncontexts: [{name: c, context: {cluster: c, user: u}}]\nclusters: [{name: c, cluster: {server: \"https://127.0.0.1:6443\"}}]\nusers: [{name: u, user: {token: abc}}]\n"))
	f.Add([]byte("apiVersion: v1\nkind: Config\ncurrent-context: c\ncontexts: [{name: c, context: {cluster: c, user: u}}]\nclusters: [{name: c, cluster: {server: \"https://x\"}}]\nusers: [{name: u, user: {exec: {command: sh}}}]\n"))
	f.Add([]byte("{}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := reconcile.RemoteConfig(data)
		if err != nil {
			return
		}
		if !strings.HasPrefix(cfg.Host, "https://") || cfg.ExecProvider != nil || cfg.AuthProvider != nil || cfg.BearerTokenFile != "" ||
			cfg.CertFile != "" || cfg.KeyFile != "" || cfg.CAFile != "" || cfg.Insecure || cfg.Proxy != nil || cfg.Impersonate.UserName != "" {
			t.Fatalf("accepted a config that reaches beyond its server: %+v", cfg)
		}
	})
}
