package reconcile_test

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	helmv2 "github.com/fluxcd/helm-controller/api/v2"
	"github.com/fluxcd/pkg/apis/meta"
	sourcev1 "github.com/fluxcd/source-controller/api/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferry-gitops/ferry/api"
	"github.com/ferry-gitops/ferry/fetch"
	"github.com/ferry-gitops/ferry/internal/testenv"
	"github.com/ferry-gitops/ferry/spec"
)

// chartTemplate renders a ConfigMap <release>-cm holding the value greeting and the chart's
// version.
const chartTemplate = `apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-cm
data:
  greeting: {{ .Values.greeting | quote }}
  chart: {{ .Chart.Version | quote }}
`

// badTemplate is a ConfigMap whose name the API server rejects.
const badTemplate = `apiVersion: v1
kind: ConfigMap
metadata:
  name: Not_A_Valid_Name
data:
  x: "y"
`

// helmEnv is an env with a Helm repository whose charts go into the bundles.
type helmEnv struct {
	*env
	charts *testenv.HelmRepo
}

func newHelmEnv(t *testing.T, name string, files map[string]string) (*helmEnv, string) {
	t.Helper()
	e, commit := newEnv(t, name, files)
	repo, err := testenv.StartHelmRepo(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { repo.Stop() })
	t.Cleanup(func() {
		removeAll(e.c, e.ns)
	})
	hr := &sourcev1.HelmRepository{
		ObjectMeta: metav1.ObjectMeta{Name: "charts", Namespace: e.ns},
		Spec:       sourcev1.HelmRepositorySpec{URL: repo.URL, Interval: metav1.Duration{Duration: time.Minute}},
	}
	if err := e.c.Create(context.Background(), hr); err != nil {
		t.Fatal(err)
	}
	return &helmEnv{env: e, charts: repo}, commit
}

// addChart packages chart "app" at version with the ConfigMap template and more templates.
func (h *helmEnv) addChart(version string, more map[string]string) {
	h.t.Helper()
	templates := map[string]string{"configmap.yaml": chartTemplate}
	for k, v := range more {
		templates[k] = v
	}
	if _, err := h.charts.AddChart("app", version, templates, map[string]any{"greeting": "chart default"}); err != nil {
		h.t.Fatal(err)
	}
}

// importCharts carries the Git repository as item "platform" and chart "app" at version as
// item "app" in the next signed bundle, and imports it into the cache.
func (h *helmEnv) importCharts(version string) {
	h.t.Helper()
	dir, l, b := h.nextBundle()
	ch, err := fetch.Chart(context.Background(), l, spec.Chart{Name: "app", Repository: h.charts.URL, Version: version}, &fetch.Options{})
	if err != nil {
		h.t.Fatal(err)
	}
	if ch.Revision != version {
		h.t.Fatalf("carried chart version %s, want %s", ch.Revision, version)
	}
	b.Items = append(b.Items, ch)
	h.signAndImport(dir, l, b)
}

// helmRelease is a HelmRelease of chart "app" of HelmRepository "charts" releasing into
// namespace default, with drift detection on, no waiting, and a failed upgrade rolled back
// (Flux's defaults: off, on, not without retries).
func (h *helmEnv) helmRelease(name string, values string) *helmv2.HelmRelease {
	hr := &helmv2.HelmRelease{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: h.ns},
		Spec: helmv2.HelmReleaseSpec{
			Chart: &helmv2.HelmChartTemplate{Spec: helmv2.HelmChartTemplateSpec{
				Chart: "app", SourceRef: helmv2.CrossNamespaceObjectReference{Kind: sourcev1.HelmRepositoryKind, Name: "charts"},
			}},
			DriftDetection:  &helmv2.DriftDetection{Mode: helmv2.DriftDetectionEnabled},
			Install:         &helmv2.Install{DisableWait: true},
			Upgrade:         &helmv2.Upgrade{DisableWait: true, Remediation: &helmv2.UpgradeRemediation{RemediateLastFailure: ptr.To(true)}},
			ReleaseName:     h.ns + "-" + name,
			TargetNamespace: "default",
			Interval:        metav1.Duration{Duration: time.Minute},
			Timeout:         &metav1.Duration{Duration: 30 * time.Second},
		},
	}
	if values != "" {
		hr.Spec.Values = &apiextensionsv1.JSON{Raw: []byte(values)}
	}
	return hr
}

func (h *helmEnv) getHR(name string) (*helmv2.HelmRelease, metav1.Condition) {
	h.t.Helper()
	var hr helmv2.HelmRelease
	if err := h.c.Get(context.Background(), types.NamespacedName{Namespace: h.ns, Name: name}, &hr); err != nil {
		h.t.Fatal(err)
	}
	c := apimeta.FindStatusCondition(hr.Status.Conditions, meta.ReadyCondition)
	if c == nil {
		h.t.Fatalf("helmrelease %s has no Ready condition: %+v", name, hr.Status)
	}
	return &hr, *c
}

// expectHR checks a HelmRelease's Ready condition, lastAppliedRevision and the history's
// statuses (newest first, as "version:chartVersion:status").
func (h *helmEnv) expectHR(name string, ready bool, reason, applied string, history []string, parts ...string) *helmv2.HelmRelease {
	h.t.Helper()
	hr, c := h.getHR(name)
	want := metav1.ConditionFalse
	if ready {
		want = metav1.ConditionTrue
	}
	if c.Status != want || c.Reason != reason {
		h.t.Fatalf("helmrelease %s: Ready = %s %s %q, want %s %s", name, c.Status, c.Reason, c.Message, want, reason)
	}
	for _, p := range parts {
		if !strings.Contains(c.Message, p) {
			h.t.Fatalf("helmrelease %s: message %q does not say %q", name, c.Message, p)
		}
	}
	if got := deployedVersion(hr); got != applied {
		h.t.Fatalf("helmrelease %s: deployed chart version %q, want %q (history %+v)", name, got, applied, hr.Status.History)
	}
	if hr.Status.ObservedGeneration != hr.Generation {
		h.t.Fatalf("helmrelease %s: observedGeneration %d, generation %d", name, hr.Status.ObservedGeneration, hr.Generation)
	}
	// Ready=True stands alone (kstatus Current); Ready=False comes with Reconciling or Stalled.
	reconciling := apimeta.IsStatusConditionTrue(hr.Status.Conditions, "Reconciling")
	stalled := apimeta.IsStatusConditionTrue(hr.Status.Conditions, "Stalled")
	if ready && (reconciling || stalled) || !ready && reconciling == stalled {
		h.t.Fatalf("helmrelease %s: Ready %s with Reconciling %v and Stalled %v: %+v", name, c.Status, reconciling, stalled, hr.Status.Conditions)
	}
	var got []string
	for _, s := range hr.Status.History {
		got = append(got, strings.Join([]string{strconv.Itoa(s.Version), s.ChartVersion, s.Status}, ":"))
	}
	if !slices.Equal(got, history) {
		h.t.Fatalf("helmrelease %s: history %v, want %v", name, got, history)
	}
	return hr
}

// appliedAll returns the Kustomizations and HelmReleases the reconciler logged as applied, in
// order.
func (h *helmEnv) appliedAll() []string {
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(h.logs.String()), "\n") {
		var rec struct {
			Msg           string `json:"msg"`
			Kustomization string `json:"kustomization"`
			HelmRelease   string `json:"helmrelease"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "applied" && rec.Kustomization+rec.HelmRelease != "" {
			out = append(out, rec.Kustomization+rec.HelmRelease)
		}
	}
	return out
}

// Install 1.0.0, upgrade to 1.1.0, fail the upgrade to 1.2.0 and roll back.
func TestHelmReleaseLifecycle(t *testing.T) {
	ctx := context.Background()
	h, _ := newHelmEnv(t, "helm-life", map[string]string{"x/cm.yaml": configMapYAML("default", "helm-life-x", "one")})
	h.addChart("1.0.0", nil)
	h.addChart("1.1.0", nil)
	h.addChart("1.2.0", map[string]string{"bad.yaml": badTemplate})
	h.importCharts("1.0.0")
	hr := h.helmRelease("app", `{"greeting":"hello"}`)
	if err := h.c.Create(ctx, hr); err != nil {
		t.Fatal(err)
	}
	cmName := hr.Spec.ReleaseName + "-cm"

	// (a) install
	if err := h.r.ReconcileAll(ctx); err != nil {
		t.Fatal(err)
	}
	h.expectHR("app", true, meta.ReconciliationSucceededReason, "1.0.0", []string{"1:1.0.0:deployed"}, "revision 1", "1.0.0")
	cm, ok := h.configMap("default", cmName)
	if !ok || cm.Data["greeting"] != "hello" || cm.Data["chart"] != "1.0.0" {
		t.Fatalf("ConfigMap %s after install: %v (exists %v)", cmName, cm.Data, ok)
	}
	if !slices.ContainsFunc(cm.ManagedFields, func(m metav1.ManagedFieldsEntry) bool { return m.Operation == metav1.ManagedFieldsOperationApply }) {
		t.Fatalf("ConfigMap %s was not applied server-side: %+v", cmName, cm.ManagedFields)
	}

	// Unchanged: a second pass makes no new revision.
	if err := h.r.ReconcileAll(ctx); err != nil {
		t.Fatal(err)
	}
	h.expectHR("app", true, meta.ReconciliationSucceededReason, "1.0.0", []string{"1:1.0.0:deployed"})

	// (b) upgrade
	h.importCharts("1.1.0")
	if err := h.r.ReconcileAll(ctx); err != nil {
		t.Fatal(err)
	}
	h.expectHR("app", true, meta.ReconciliationSucceededReason, "1.1.0", []string{"2:1.1.0:deployed", "1:1.0.0:superseded"}, "revision 2")
	if cm, _ = h.configMap("default", cmName); cm.Data["chart"] != "1.1.0" || cm.Data["greeting"] != "hello" {
		t.Fatalf("ConfigMap %s after the upgrade: %v", cmName, cm.Data)
	}

	// (c) a failing upgrade is rolled back
	h.importCharts("1.2.0")
	err := h.r.ReconcileAll(ctx)
	if err == nil || !strings.Contains(err.Error(), "helmrelease "+h.ns+"/app") || !strings.Contains(err.Error(), helmv2.UpgradeFailedReason) {
		t.Fatalf("ReconcileAll after a failing upgrade: %v", err)
	}
	failed := h.expectHR("app", false, helmv2.UpgradeFailedReason, "1.1.0",
		[]string{"4:1.1.0:deployed", "3:1.2.0:failed", "2:1.1.0:superseded", "1:1.0.0:superseded"},
		"Not_A_Valid_Name", "rolled back to revision 2")
	if failed.Status.LastAttemptedRevision != "1.2.0" || failed.Status.UpgradeFailures != 1 {
		t.Fatalf("after the failed upgrade: lastAttempted %q, upgradeFailures %d", failed.Status.LastAttemptedRevision, failed.Status.UpgradeFailures)
	}
	if cm, _ = h.configMap("default", cmName); cm.Data["chart"] != "1.1.0" {
		t.Fatalf("ConfigMap %s after the rollback: %v, want the 1.1.0 content", cmName, cm.Data)
	}

	// Retries exhausted (0 retries): the next pass does not try 1.2.0 again.
	if err := h.r.ReconcileAll(ctx); err == nil {
		t.Fatal("ReconcileAll succeeded with the failed upgrade pending")
	}
	h.expectHR("app", false, helmv2.UpgradeFailedReason, "1.1.0",
		[]string{"4:1.1.0:deployed", "3:1.2.0:failed", "2:1.1.0:superseded", "1:1.0.0:superseded"}, "retries exhausted")

	// New values are a new attempt; changed values alone upgrade too.
	h.importCharts("1.1.0")
	hr2, _ := h.getHR("app")
	hr2.Spec.Values = &apiextensionsv1.JSON{Raw: []byte(`{"greeting":"again"}`)}
	if err := h.c.Update(ctx, hr2); err != nil {
		t.Fatal(err)
	}
	if err := h.r.ReconcileAll(ctx); err != nil {
		t.Fatal(err)
	}
	h.expectHR("app", true, meta.ReconciliationSucceededReason, "1.1.0",
		[]string{"5:1.1.0:deployed", "4:1.1.0:superseded", "3:1.2.0:failed", "2:1.1.0:superseded", "1:1.0.0:superseded"})
	if cm, _ = h.configMap("default", cmName); cm.Data["greeting"] != "again" {
		t.Fatalf("ConfigMap %s after a values change: %v", cmName, cm.Data)
	}
}

// (d) valuesFrom: ConfigMap and Secret values merge in order, inline values last; an optional
// missing ConfigMap adds nothing, a required one is ValuesFailed; a version constraint the cache does not satisfy is ChartNotFound.
func TestHelmReleaseValuesFrom(t *testing.T) {
	ctx := context.Background()
	h, _ := newHelmEnv(t, "helm-values", map[string]string{"x/cm.yaml": configMapYAML("default", "helm-values-x", "one")})
	h.addChart("1.0.0", nil)
	h.importCharts("1.0.0")
	for _, obj := range []client.Object{
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "base", Namespace: h.ns}, Data: map[string]string{"values.yaml": "greeting: from-configmap\nother: {a: 1}\n"}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "over", Namespace: h.ns}, Data: map[string][]byte{"custom.yaml": []byte("greeting: from-secret\n")}},
	} {
		if err := h.c.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name, values string
		from         []helmv2.ValuesReference
		version      string
	}{
		{name: "configmap", from: []helmv2.ValuesReference{{Kind: "ConfigMap", Name: "base"}}},
		{name: "secret-wins", from: []helmv2.ValuesReference{{Kind: "ConfigMap", Name: "base"}, {Kind: "Secret", Name: "over", ValuesKey: "custom.yaml"}}},
		{name: "inline-wins", values: `{"greeting":"inline"}`, from: []helmv2.ValuesReference{{Kind: "ConfigMap", Name: "base"}}},
		{name: "optional", from: []helmv2.ValuesReference{{Kind: "ConfigMap", Name: "absent", Optional: true}}},
		{name: "missing", from: []helmv2.ValuesReference{{Kind: "ConfigMap", Name: "absent"}}},
		{name: "version", version: ">=2.0.0"},
	} {
		hr := h.helmRelease(tc.name, tc.values)
		hr.Spec.ValuesFrom = tc.from
		hr.Spec.Chart.Spec.Version = tc.version
		if err := h.c.Create(ctx, hr); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.r.ReconcileAll(ctx); err == nil {
		t.Fatal("ReconcileAll succeeded with a missing valuesFrom ConfigMap")
	}
	for _, tc := range []struct {
		name   string
		ready  bool
		want   string // the greeting rendered
		reason string // when not ready
		parts  []string
	}{
		{"configmap", true, "from-configmap", "", nil},
		{"secret-wins", true, "from-secret", "", nil},
		{"inline-wins", true, "inline", "", nil},
		{"optional", true, "", "", nil}, // no values at all
		{"missing", false, "", api.ValuesFailedReason, []string{"ConfigMap " + h.ns + "/absent", "not found"}},
		{"version", false, "", api.SourceNotCarriedReason, []string{"1.0.0", ">=2.0.0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.t = t
			defer func() { h.t = h.env.t }()
			cmName := h.ns + "-" + tc.name + "-cm"
			if !tc.ready {
				h.expectHR(tc.name, false, tc.reason, "", nil, tc.parts...)
				if _, ok := h.configMap("default", cmName); ok {
					t.Fatalf("ConfigMap %s exists", cmName)
				}
				return
			}
			h.expectHR(tc.name, true, meta.ReconciliationSucceededReason, "1.0.0", []string{"1:1.0.0:deployed"})
			if cm, ok := h.configMap("default", cmName); !ok || cm.Data["greeting"] != tc.want || cm.Data["chart"] != "1.0.0" {
				t.Fatalf("ConfigMap %s: %v (exists %v), want greeting %q", cmName, cm.Data, ok, tc.want)
			}
		})
	}
}

// (e) A HelmRelease depending on another HelmRelease is released after it, in one pass.
func TestHelmReleaseDependsOn(t *testing.T) {
	ctx := context.Background()
	h, _ := newHelmEnv(t, "helm-deps", map[string]string{"x/cm.yaml": configMapYAML("default", "helm-deps-x", "one")})
	h.addChart("1.0.0", nil)
	h.importCharts("1.0.0")
	app := h.helmRelease("app", "")
	app.Spec.DependsOn = []helmv2.DependencyReference{{Name: "zz-base"}}
	base := h.helmRelease("zz-base", "")
	for _, hr := range []*helmv2.HelmRelease{app, base} {
		if err := h.c.Create(ctx, hr); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.r.ReconcileAll(ctx); err != nil {
		t.Fatal(err)
	}
	want := []string{h.ns + "/zz-base", h.ns + "/app"}
	if got := h.appliedAll(); !slices.Equal(got, want) {
		t.Fatalf("applied %v, want %v", got, want)
	}
	h.expectHR("app", true, meta.ReconciliationSucceededReason, "1.0.0", []string{"1:1.0.0:deployed"})
	h.expectHR("zz-base", true, meta.ReconciliationSucceededReason, "1.0.0", []string{"1:1.0.0:deployed"})
}

// Two HelmReleases depending on each other are a cycle.
func TestHelmReleaseCycle(t *testing.T) {
	ctx := context.Background()
	h, _ := newHelmEnv(t, "helm-cycle", map[string]string{"x/cm.yaml": configMapYAML("default", "helm-cycle-x", "one")})
	h.addChart("1.0.0", nil)
	h.importCharts("1.0.0")
	a := h.helmRelease("a", "")
	a.Spec.DependsOn = []helmv2.DependencyReference{{Name: "b"}}
	b := h.helmRelease("b", "")
	b.Spec.DependsOn = []helmv2.DependencyReference{{Name: "a"}}
	for _, hr := range []*helmv2.HelmRelease{a, b} {
		if err := h.c.Create(ctx, hr); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.r.ReconcileAll(ctx); err == nil {
		t.Fatal("ReconcileAll succeeded with a cycle")
	}
	cycle := h.ns + "/a -> " + h.ns + "/b -> " + h.ns + "/a"
	h.expectHR("a", false, api.DependencyCycleReason, "", nil, cycle)
	h.expectHR("b", false, api.DependencyCycleReason, "", nil, cycle)
}

// unreadyDeployment never becomes available here: there is no kubelet to run its pods.
const unreadyDeployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}-web
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: registry.example/web@sha256:0000000000000000000000000000000000000000000000000000000000000000
`

// An upgrade whose health check fails (wait: its Deployment never becomes available within the
// timeout) is rolled back, and the HelmRelease says so.
func TestHelmReleaseRollsBackWhenHealthCheckFails(t *testing.T) {
	ctx := context.Background()
	h, _ := newHelmEnv(t, "helm-health", map[string]string{"x/cm.yaml": configMapYAML("default", "helm-health-x", "one")})
	h.addChart("1.0.0", nil)
	h.addChart("1.1.0", map[string]string{"web.yaml": unreadyDeployment})
	h.importCharts("1.0.0")
	hr := h.helmRelease("app", `{"greeting":"hello"}`)
	hr.Spec.Install, hr.Spec.Upgrade = nil, &helmv2.Upgrade{Remediation: &helmv2.UpgradeRemediation{RemediateLastFailure: ptr.To(true)}}
	hr.Spec.Timeout = &metav1.Duration{Duration: 3 * time.Second}
	if err := h.c.Create(ctx, hr); err != nil {
		t.Fatal(err)
	}
	if err := h.r.ReconcileAll(ctx); err != nil {
		t.Fatal(err)
	}
	h.expectHR("app", true, meta.ReconciliationSucceededReason, "1.0.0", []string{"1:1.0.0:deployed"})

	h.importCharts("1.1.0")
	if err := h.r.ReconcileAll(ctx); err == nil {
		t.Fatal("an upgrade that never became healthy was reported as applied")
	}
	h.expectHR("app", false, helmv2.UpgradeFailedReason, "1.0.0",
		[]string{"3:1.0.0:deployed", "2:1.1.0:failed", "1:1.0.0:superseded"}, "rolled back to revision 1")
	var dep appsv1.Deployment
	err := h.c.Get(ctx, types.NamespacedName{Namespace: "default", Name: hr.Spec.ReleaseName + "-web"}, &dep)
	if !apierrors.IsNotFound(err) {
		t.Fatalf("the unhealthy upgrade's Deployment is still there after the rollback: %v", err)
	}
	_, c := h.getHR("app")
	t.Logf("health check failed, rolled back: %s", c.Message)

	ok := h.waitEvent(helmv2.HelmReleaseKind, "app", meta.ReconciliationSucceededReason)
	if ok.Type != corev1.EventTypeNormal || !strings.Contains(ok.Note, "1.0.0") || ok.ReportingController != "ferry" {
		t.Errorf("success Event: %s %q by %q", ok.Type, ok.Note, ok.ReportingController)
	}
	failed := h.waitEvent(helmv2.HelmReleaseKind, "app", helmv2.UpgradeFailedReason)
	if failed.Type != corev1.EventTypeWarning || !strings.Contains(failed.Note, "rolled back to revision 1") {
		t.Errorf("failure Event: %s %q", failed.Type, failed.Note)
	}
}

// deployedVersion is the chart version of a HelmRelease's latest revision when it is deployed.
func deployedVersion(hr *helmv2.HelmRelease) string {
	if len(hr.Status.History) == 0 || hr.Status.History[0].Status != "deployed" {
		return ""
	}
	return hr.Status.History[0].ChartVersion
}
