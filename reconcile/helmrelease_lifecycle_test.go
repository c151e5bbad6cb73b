package reconcile_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	helmv2 "github.com/fluxcd/helm-controller/api/v2"
	"github.com/fluxcd/pkg/apis/meta"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferry-gitops/ferry/api"
	"github.com/ferry-gitops/ferry/reconcile"
)

// extraTemplate renders a second ConfigMap, <release>-extra.
const extraTemplate = `apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-extra
data:
  color: blue
`

// testHookTemplate is a helm test hook Pod. Nothing runs it here (there is no kubelet): it
// stays Pending unless the test sets its phase.
const testHookTemplate = `apiVersion: v1
kind: Pod
metadata:
  name: {{ .Release.Name }}-test
  annotations:
    helm.sh/hook: test
spec:
  restartPolicy: Never
  automountServiceAccountToken: false
  containers:
  - name: test
    image: registry.example/test@sha256:0000000000000000000000000000000000000000000000000000000000000000
`

// releaseSecrets returns the statuses of the Helm storage Secrets of release ns/name, by
// revision order.
func (h *helmEnv) releaseSecrets(ns, name string) []string {
	h.t.Helper()
	var list corev1.SecretList
	if err := h.c.List(context.Background(), &list, client.InNamespace(ns), client.MatchingLabels{"owner": "helm", "name": name}); err != nil {
		h.t.Fatal(err)
	}
	var out []string
	for _, s := range list.Items {
		out = append(out, s.Labels["version"]+":"+s.Labels["status"])
	}
	slices.Sort(out)
	return out
}

// createHR creates HelmReleases.
func (h *helmEnv) createHR(hrs ...*helmv2.HelmRelease) {
	h.t.Helper()
	for _, hr := range hrs {
		if err := h.c.Create(context.Background(), hr); err != nil {
			h.t.Fatalf("create %s: %v", hr.Name, err)
		}
	}
}

// editConfigMap merge-patches a ConfigMap's data as another field manager would (kubectl edit).
func (h *helmEnv) editConfigMap(ns, name, data string) {
	h.t.Helper()
	cm, ok := h.configMap(ns, name)
	if !ok {
		h.t.Fatalf("ConfigMap %s/%s does not exist", ns, name)
	}
	if err := h.c.Patch(context.Background(), &cm, client.RawPatch(types.MergePatchType, []byte(`{"data":`+data+`}`)), client.FieldOwner("kubectl-edit")); err != nil {
		h.t.Fatal(err)
	}
}

// A deleted HelmRelease has its release uninstalled (with keepHistory, its history is kept as
// uninstalled and a new HelmRelease of the same release installs it again); a suspended one is
// let go with its release installed. The new spec fields survive a round trip.
func TestHelmReleaseFinalizer(t *testing.T) {
	ctx := context.Background()
	h, _ := newHelmEnv(t, "helm-fin", map[string]string{"x/cm.yaml": configMapYAML("default", "helm-fin-x", "one")})
	h.addChart("1.0.0", nil)
	h.importCharts("1.0.0")
	r, res := h.reporting()

	app := h.helmRelease("app", "")
	keep := h.helmRelease("keep", "")
	keep.Spec.Uninstall = &helmv2.Uninstall{KeepHistory: true, DisableHooks: true, Timeout: &metav1.Duration{Duration: 20 * time.Second}}
	keep.Spec.Test = &helmv2.Test{Enable: false, IgnoreFailures: true, Timeout: &metav1.Duration{Duration: time.Second}}
	keep.Spec.DriftDetection = &helmv2.DriftDetection{Mode: helmv2.DriftDetectionWarn}
	susp := h.helmRelease("susp", "")
	h.createHR(app, keep, susp)
	got, _ := h.getHRNoCond("keep")
	if u := got.Spec.Uninstall; u == nil || !u.KeepHistory || !u.DisableHooks || u.Timeout == nil || u.Timeout.Duration != 20*time.Second {
		t.Fatalf("spec.uninstall after a round trip: %+v", u)
	}
	if te := got.Spec.Test; te == nil || te.Enable || !te.IgnoreFailures || te.Timeout == nil || te.Timeout.Duration != time.Second {
		t.Fatalf("spec.test after a round trip: %+v", te)
	}
	if d := got.Spec.DriftDetection; d == nil || d.Mode != helmv2.DriftDetectionWarn {
		t.Fatalf("spec.driftDetection after a round trip: %+v", d)
	}
	bad := h.helmRelease("bad", "")
	bad.Spec.DriftDetection = &helmv2.DriftDetection{Mode: "sometimes"}
	if err := h.c.Create(ctx, bad); err == nil || !apierrors.IsInvalid(err) {
		t.Fatalf("create with driftDetection mode sometimes: %v, want invalid", err)
	}

	if err := r.ReconcileAll(ctx); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"app", "keep", "susp"} {
		hr := h.expectHR(name, true, meta.ReconciliationSucceededReason, "1.0.0", []string{"1:1.0.0:deployed"})
		if !slices.Contains(hr.Finalizers, api.Finalizer) {
			t.Fatalf("helmrelease %s: finalizers %v", name, hr.Finalizers)
		}
	}
	s, _ := h.getHR("susp")
	s.Spec.Suspend = true
	if err := h.c.Update(ctx, s); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"app", "keep", "susp"} {
		hr, _ := h.getHR(name)
		if err := h.c.Delete(ctx, hr); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.ReconcileAll(ctx); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"app", "keep", "susp"} {
		h.gone(&helmv2.HelmRelease{ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: name}})
	}
	for name, want := range map[string][]string{"app": nil, "keep": {"1:uninstalled"}, "susp": {"1:deployed"}} {
		rel := h.ns + "-" + name
		if got := h.releaseSecrets("default", rel); !slices.Equal(got, want) {
			t.Errorf("release %s: storage %v, want %v", rel, got, want)
		}
		_, exists := h.configMap("default", rel+"-cm")
		if exists != (name == "susp") {
			t.Errorf("ConfigMap %s-cm exists = %v", rel, exists)
		}
	}
	for name, note := range map[string]string{
		"app":  "uninstalled release default/" + h.ns + "-app; finalizer removed",
		"keep": "uninstalled release default/" + h.ns + "-keep, history kept; finalizer removed",
		"susp": "suspended: release default/" + h.ns + "-susp left installed; finalizer removed",
	} {
		got := res.of(helmv2.HelmReleaseKind, h.ns, name)
		if len(got) != 2 || !got[1].Deleted || got[1].Message != note {
			t.Errorf("results of %s: %+v, want the second Deleted with %q", name, got, note)
		}
		if ev := h.waitEvent(helmv2.HelmReleaseKind, name, api.FinalizedReason); ev.Note != note || ev.Type != corev1.EventTypeNormal {
			t.Errorf("Event of %s: %s %q", name, ev.Type, ev.Note)
		}
	}

	// The kept history does not stop a new HelmRelease of the release from installing it
	// (replacing the uninstalled revision, which Helm marks superseded).
	h.createHR(h.helmRelease("keep", ""))
	if err := r.ReconcileAll(ctx); err != nil {
		t.Fatal(err)
	}
	h.expectHR("keep", true, meta.ReconciliationSucceededReason, "1.0.0", []string{"2:1.0.0:deployed", "1:1.0.0:superseded"})
	if _, ok := h.configMap("default", h.ns+"-keep-cm"); !ok {
		t.Fatal("the re-installed release has no ConfigMap")
	}
}

// getHRNoCond reads a HelmRelease that may not have a Ready condition yet.
func (h *helmEnv) getHRNoCond(name string) (*helmv2.HelmRelease, error) {
	h.t.Helper()
	var hr helmv2.HelmRelease
	err := h.c.Get(context.Background(), types.NamespacedName{Namespace: h.ns, Name: name}, &hr)
	if err != nil {
		h.t.Fatal(err)
	}
	return &hr, err
}

// Drift detection: with the default mode, a ConfigMap of the release edited by hand and
// another deleted are put back at the next reconciliation without a new revision, reported as
// DriftCorrected, and a later upgrade still owns them; with warn, drift is reported and left;
// with disabled, nothing is checked. An unchanged release shows no drift.
func TestHelmReleaseDriftCorrection(t *testing.T) {
	ctx := context.Background()
	h, _ := newHelmEnv(t, "helm-drift", map[string]string{"x/cm.yaml": configMapYAML("default", "helm-drift-x", "one")})
	h.addChart("1.0.0", map[string]string{"extra.yaml": extraTemplate})
	h.addChart("1.1.0", map[string]string{"extra.yaml": extraTemplate})
	h.importCharts("1.0.0")
	r, res := h.reporting()
	warn := h.helmRelease("warn", `{"greeting":"hello"}`)
	warn.Spec.DriftDetection = &helmv2.DriftDetection{Mode: helmv2.DriftDetectionWarn}
	off := h.helmRelease("off", `{"greeting":"hello"}`)
	off.Spec.DriftDetection = &helmv2.DriftDetection{Mode: helmv2.DriftDetectionDisabled}
	h.createHR(h.helmRelease("app", `{"greeting":"hello"}`), warn, off)
	if err := r.ReconcileAll(ctx); err != nil {
		t.Fatal(err)
	}
	key := func(name string) types.NamespacedName { return types.NamespacedName{Namespace: h.ns, Name: name} }
	last := func(name string) reconcile.Result {
		got := res.of(helmv2.HelmReleaseKind, h.ns, name)
		if len(got) == 0 {
			t.Fatalf("no result for %s", name)
		}
		return got[len(got)-1]
	}

	// No false drift: the release as Helm applied it matches its manifest.
	for _, name := range []string{"app", "warn"} {
		if err := r.ReconcileHelmRelease(ctx, key(name)); err != nil {
			t.Fatal(err)
		}
		if x := last(name); x.DriftCorrected != 0 || !x.Ready || strings.Contains(x.Message, "drift corrected") || strings.Contains(x.Message, "drift detected") {
			t.Fatalf("%s unchanged: result %+v, want no drift", name, x)
		}
	}

	rel := h.ns + "-app"
	h.editConfigMap("default", rel+"-cm", `{"greeting":"by-hand"}`)
	extra, _ := h.configMap("default", rel+"-extra")
	if err := h.c.Delete(ctx, &extra); err != nil {
		t.Fatal(err)
	}
	if err := r.ReconcileHelmRelease(ctx, key("app")); err != nil {
		t.Fatal(err)
	}
	if x := last("app"); x.DriftCorrected != 2 || !x.Ready {
		t.Fatalf("result after drift: %+v, want 2 objects corrected", x)
	}
	h.expectHR("app", true, meta.ReconciliationSucceededReason, "1.0.0", []string{"1:1.0.0:deployed"},
		"drift corrected: ConfigMap default/"+rel+"-cm configured, ConfigMap default/"+rel+"-extra created")
	cm, _ := h.configMap("default", rel+"-cm")
	if cm.Data["greeting"] != "hello" {
		t.Fatalf("drift not corrected: %v", cm.Data)
	}
	extra, ok := h.configMap("default", rel+"-extra")
	if !ok || extra.Labels["app.kubernetes.io/managed-by"] != "Helm" || extra.Annotations["meta.helm.sh/release-name"] != rel {
		t.Fatalf("the re-created ConfigMap lacks Helm's ownership metadata: %v %v (exists %v)", extra.Labels, extra.Annotations, ok)
	}
	h.waitEvent(helmv2.HelmReleaseKind, "app", meta.ReconciliationSucceededReason)

	// warn: reported, not corrected; disabled: not even looked at.
	h.editConfigMap("default", h.ns+"-warn-cm", `{"greeting":"by-hand"}`)
	h.editConfigMap("default", h.ns+"-off-cm", `{"greeting":"by-hand"}`)
	for _, name := range []string{"warn", "off"} {
		if err := r.ReconcileHelmRelease(ctx, key(name)); err != nil {
			t.Fatal(err)
		}
		if x := last(name); x.DriftCorrected != 0 || !x.Ready {
			t.Fatalf("%s: result %+v", name, x)
		}
		if cm, _ := h.configMap("default", h.ns+"-"+name+"-cm"); cm.Data["greeting"] != "by-hand" {
			t.Fatalf("%s: the edit was undone: %v", name, cm.Data)
		}
	}
	h.expectHR("warn", true, meta.ReconciliationSucceededReason, "1.0.0", []string{"1:1.0.0:deployed"},
		"drift detected, not corrected (driftDetection mode warn): ConfigMap default/"+h.ns+"-warn-cm configured")
	if ev := h.waitEvent(helmv2.HelmReleaseKind, "warn", helmv2.DriftDetectedReason); ev.Type != corev1.EventTypeWarning {
		t.Errorf("DriftDetected Event: %s %q", ev.Type, ev.Note)
	}
	if _, c := h.getHR("off"); strings.Contains(c.Message, "drift corrected") || strings.Contains(c.Message, "drift detected") {
		t.Fatalf("off: message %q mentions drift", c.Message)
	}

	// The corrected objects are still Helm's: an upgrade takes them over cleanly.
	h.importCharts("1.1.0")
	if err := r.ReconcileHelmRelease(ctx, key("app")); err != nil {
		t.Fatal(err)
	}
	h.expectHR("app", true, meta.ReconciliationSucceededReason, "1.1.0", []string{"2:1.1.0:deployed", "1:1.0.0:superseded"})
	if cm, _ := h.configMap("default", rel+"-cm"); cm.Data["chart"] != "1.1.0" || cm.Data["greeting"] != "hello" {
		t.Fatalf("ConfigMap after the upgrade: %v", cm.Data)
	}
}

// testEnv is a helm env whose releases go into its own namespace, which has the default
// ServiceAccount Pods need (there is no controller-manager to create it).
func testEnv(t *testing.T, name string) *helmEnv {
	t.Helper()
	h, _ := newHelmEnv(t, name, map[string]string{"x/cm.yaml": configMapYAML("default", name+"-x", "one")})
	if err := h.c.Create(context.Background(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: "default"}}); err != nil {
		t.Fatal(err)
	}
	return h
}

// playKubelet waits for Pod ns/name and sets its phase, as a kubelet would once it ran it.
func playKubelet(ctx context.Context, c client.Client, ns, name string, phase corev1.PodPhase) {
	for ctx.Err() == nil {
		var pod corev1.Pod
		if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &pod); err == nil && pod.Status.Phase != phase {
			patch := client.RawPatch(types.MergePatchType, []byte(`{"status":{"phase":"`+string(phase)+`"}}`))
			c.Status().Patch(ctx, &pod, patch)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// spec.test: disabled, the test hook is not run; enabled, a test Pod that never completes
// (no kubelet) fails the install at the test timeout, which is TestFailed and uninstalled; a
// test Pod that succeeds (the test plays the kubelet and sets its phase) passes.
func TestHelmReleaseTests(t *testing.T) {
	ctx := context.Background()
	h := testEnv(t, "helm-tests")
	h.addChart("1.0.0", map[string]string{"test.yaml": testHookTemplate})
	h.importCharts("1.0.0")
	mk := func(name string, test *helmv2.Test) *helmv2.HelmRelease {
		hr := h.helmRelease(name, "")
		hr.Spec.TargetNamespace = h.ns
		hr.Spec.Test = test
		return hr
	}
	h.createHR(
		mk("off", &helmv2.Test{Enable: false}),
		mk("fail", &helmv2.Test{Enable: true, Timeout: &metav1.Duration{Duration: 2 * time.Second}}),
		mk("ignored", &helmv2.Test{Enable: true, IgnoreFailures: true, Timeout: &metav1.Duration{Duration: 2 * time.Second}}),
		mk("pass", &helmv2.Test{Enable: true, Timeout: &metav1.Duration{Duration: 20 * time.Second}}),
	)
	kubelet, stop := context.WithCancel(ctx)
	defer stop()
	go playKubelet(kubelet, h.c, h.ns, h.ns+"-pass-test", corev1.PodSucceeded)

	err := h.r.ReconcileAll(ctx)
	if err == nil || !strings.Contains(err.Error(), "helmrelease "+h.ns+"/fail: "+helmv2.TestFailedReason) {
		t.Fatalf("ReconcileAll = %v, want fail's TestFailed", err)
	}
	stop()

	h.expectHR("off", true, meta.ReconciliationSucceededReason, "1.0.0", []string{"1:1.0.0:deployed"})
	if err := h.c.Get(ctx, types.NamespacedName{Namespace: h.ns, Name: h.ns + "-off-test"}, &corev1.Pod{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the test Pod of a release without tests enabled: %v, want not found", err)
	}

	failed := h.expectHR("fail", false, helmv2.TestFailedReason, "", nil, "installed, but tests failed", "Pod "+h.ns+"-fail-test", "uninstalled")
	_, c := h.getHR("fail")
	t.Logf("test failed, uninstalled: %s", c.Message)
	if failed.Status.InstallFailures != 1 {
		t.Fatalf("fail: installFailures %d, want 1", failed.Status.InstallFailures)
	}
	if _, ok := h.configMap(h.ns, h.ns+"-fail-cm"); ok {
		t.Fatal("the release whose tests failed was not uninstalled")
	}
	if ev := h.waitEvent(helmv2.HelmReleaseKind, "fail", helmv2.TestFailedReason); ev.Type != corev1.EventTypeWarning {
		t.Errorf("TestFailed Event: %s %q", ev.Type, ev.Note)
	}

	h.expectHR("ignored", true, meta.ReconciliationSucceededReason, "1.0.0", []string{"1:1.0.0:deployed"}, "tests failed", "(ignored)")
	h.expectHR("pass", true, meta.ReconciliationSucceededReason, "1.0.0", []string{"1:1.0.0:deployed"}, "1 tests passed")

	// Retries exhausted (0): the next pass does not install again.
	if err := h.r.ReconcileAll(ctx); err == nil {
		t.Fatal("ReconcileAll succeeded with fail's retries exhausted")
	}
	hr := h.expectHR("fail", false, helmv2.InstallFailedReason, "", nil, "retries exhausted")
	// Exhausted retries are terminal, as in Flux's helm-controller: Stalled, not Reconciling.
	if c := apimeta.FindStatusCondition(hr.Status.Conditions, "Stalled"); c == nil || c.Status != metav1.ConditionTrue || c.Reason != api.RetriesExceededReason {
		t.Fatalf("helmrelease fail: Stalled = %+v, want True %s", c, api.RetriesExceededReason)
	}
	if c := apimeta.FindStatusCondition(hr.Status.Conditions, "Reconciling"); c != nil {
		t.Fatalf("helmrelease fail: Reconciling = %+v with retries exhausted, want none", c)
	}
}

// A failed test after an upgrade is remediated like a failed upgrade: rolled back.
func TestHelmReleaseTestFailureRollsBack(t *testing.T) {
	ctx := context.Background()
	h := testEnv(t, "helm-testrb")
	h.addChart("1.0.0", nil)
	h.addChart("1.1.0", map[string]string{"test.yaml": testHookTemplate})
	h.importCharts("1.0.0")
	hr := h.helmRelease("app", "")
	hr.Spec.TargetNamespace = h.ns
	hr.Spec.Test = &helmv2.Test{Enable: true, Timeout: &metav1.Duration{Duration: 2 * time.Second}}
	h.createHR(hr)
	if err := h.r.ReconcileAll(ctx); err != nil {
		t.Fatal(err)
	}
	h.expectHR("app", true, meta.ReconciliationSucceededReason, "1.0.0", []string{"1:1.0.0:deployed"}, "the chart has no tests")

	h.importCharts("1.1.0")
	if err := h.r.ReconcileAll(ctx); err == nil {
		t.Fatal("an upgrade whose tests failed was reported as applied")
	}
	h.expectHR("app", false, helmv2.TestFailedReason, "1.0.0",
		[]string{"3:1.0.0:deployed", "2:1.1.0:superseded", "1:1.0.0:superseded"}, "upgraded to chart app 1.1.0, but tests failed", "rolled back to revision 1")
	if cm, _ := h.configMap(h.ns, h.ns+"-app-cm"); cm.Data["chart"] != "1.0.0" {
		t.Fatalf("ConfigMap after the rollback: %v", cm.Data)
	}
	_, c := h.getHR("app")
	t.Logf("test failed, rolled back: %s", c.Message)
}

// spec.serviceAccountName: Helm runs as the ServiceAccount, so a release into the tenant's own
// namespace installs (and its drift is corrected as it), one into another namespace is
// forbidden, and a missing ServiceAccount is ServiceAccountNotFound. Deleting the HelmRelease
// uninstalls as the ServiceAccount.
func TestHelmReleaseServiceAccount(t *testing.T) {
	ctx := context.Background()
	h, _ := newHelmEnv(t, "helm-sa", map[string]string{"x/cm.yaml": configMapYAML("default", "helm-sa-x", "one")})
	h.addChart("1.0.0", nil)
	h.importCharts("1.0.0")
	for _, o := range []client.Object{
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: "deployer"}},
		&rbacv1.Role{
			ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: "helm"},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps", "secrets"},
				Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}}},
		},
		&rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: "deployer-helm"},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "helm"},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: h.ns, Name: "deployer"}},
		},
	} {
		if err := h.c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	inside := h.helmRelease("inside", `{"greeting":"tenant"}`)
	inside.Spec.TargetNamespace = h.ns
	inside.Spec.ServiceAccountName = "deployer"
	outside := h.helmRelease("outside", "")
	outside.Spec.ServiceAccountName = "deployer" // target namespace default
	nosa := h.helmRelease("nosa", "")
	nosa.Spec.ServiceAccountName = "nobody"
	h.createHR(inside, outside, nosa)
	if got, _ := h.getHRNoCond("inside"); got.Spec.ServiceAccountName != "deployer" {
		t.Fatalf("serviceAccountName after a round trip: %q", got.Spec.ServiceAccountName)
	}
	if err := h.r.ReconcileAll(ctx); err == nil {
		t.Fatal("ReconcileAll succeeded")
	}
	h.expectHR("inside", true, meta.ReconciliationSucceededReason, "1.0.0", []string{"1:1.0.0:deployed"})
	cmName := h.ns + "-inside-cm"
	cm, ok := h.configMap(h.ns, cmName)
	if !ok || cm.Data["greeting"] != "tenant" {
		t.Fatalf("ConfigMap %s: %v (exists %v)", cmName, cm.Data, ok)
	}
	h.expectHR("outside", false, helmv2.InstallFailedReason, "", nil, "forbidden", "system:serviceaccount:"+h.ns+":deployer")
	if _, ok := h.configMap("default", h.ns+"-outside-cm"); ok {
		t.Fatal("the forbidden release's ConfigMap exists")
	}
	h.expectHR("nosa", false, api.ServiceAccountNotFoundReason, "", nil, "serviceaccount "+h.ns+"/nobody not found")

	// Drift is corrected as the ServiceAccount.
	h.editConfigMap(h.ns, cmName, `{"greeting":"by-hand"}`)
	if err := h.r.ReconcileHelmRelease(ctx, types.NamespacedName{Namespace: h.ns, Name: "inside"}); err != nil {
		t.Fatal(err)
	}
	if cm, _ := h.configMap(h.ns, cmName); cm.Data["greeting"] != "tenant" {
		t.Fatalf("drift not corrected as the ServiceAccount: %v", cm.Data)
	}

	hr, _ := h.getHR("inside")
	if err := h.c.Delete(ctx, hr); err != nil {
		t.Fatal(err)
	}
	if err := h.r.ReconcileHelmRelease(ctx, types.NamespacedName{Namespace: h.ns, Name: "inside"}); err != nil {
		t.Fatal(err)
	}
	h.gone(hr)
	if _, ok := h.configMap(h.ns, cmName); ok {
		t.Fatal("the release was not uninstalled")
	}
}
