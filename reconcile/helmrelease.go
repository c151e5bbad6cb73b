package reconcile

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	helmv2 "github.com/fluxcd/helm-controller/api/v2"
	"github.com/fluxcd/pkg/apis/meta"
	"github.com/fluxcd/pkg/runtime/conditions"
	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/kube"
	rcommon "helm.sh/helm/v4/pkg/release/common"
	release "helm.sh/helm/v4/pkg/release/v1"
	"helm.sh/helm/v4/pkg/storage/driver"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/ferry-gitops/ferry/api"
)

// defaultValuesKey is the key of a valuesFrom ConfigMap or Secret read when valuesKey is empty.
const defaultValuesKey = "values.yaml"

// helmMaxHistory is how many revisions Helm keeps of a release.
const helmMaxHistory = 10

// statusHistory is how many revisions a HelmRelease's status lists.
const statusHistory = 5

// The HelmRelease kind: install or upgrade a chart item as a Helm release, test it, correct
// drift, roll a failed upgrade back; on deletion, uninstall it (docs/reconcile.md,
// "HelmReleases").

var helmReleaseKind = &kind{
	name:  helmv2.HelmReleaseKind,
	label: "helmrelease",
	new:   func() subject { return helmRelease{&helmv2.HelmRelease{}} },
	list: func(ctx context.Context, c client.Reader) ([]subject, error) {
		var list helmv2.HelmReleaseList
		if err := c.List(ctx, &list); err != nil {
			return nil, err
		}
		out := make([]subject, len(list.Items))
		for i := range list.Items {
			out[i] = helmRelease{&list.Items[i]}
		}
		return out, nil
	},
}

// helmRelease is a HelmRelease as the runner reconciles it.
type helmRelease struct{ *helmv2.HelmRelease }

func (h helmRelease) api() conditions.Setter { return h.HelmRelease }
func (h helmRelease) kind() *kind            { return helmReleaseKind }

func (h helmRelease) fields() fields {
	return fields{
		suspend: h.Spec.Suspend, interval: h.Spec.Interval.Duration, timeout: ptr.To(h.GetTimeout()),
		dependsOn:              dependencyKeys(helmv2.HelmReleaseKind, h.Namespace, refNames(h.GetDependsOn(), func(d meta.NamespacedObjectReference) (string, string) { return d.Namespace, d.Name })),
		observedGeneration:     &h.Status.ObservedGeneration,
		appliedRevision:        func() string { return deployedVersion(h.HelmRelease) },
		lastHandledReconcileAt: &h.Status.LastHandledReconcileAt,
	}
}

// deployedVersion is the chart version of the release's latest revision when it is deployed.
func deployedVersion(h *helmv2.HelmRelease) string {
	if len(h.Status.History) == 0 || h.Status.History[0].Status != rcommon.StatusDeployed.String() {
		return ""
	}
	return h.Status.History[0].ChartVersion
}

// sourceRevision is the version of the chart the HelmRelease releases.
func (h helmRelease) sourceRevision(ctx context.Context, r *Reconciler, p *pass) (string, bool) {
	res, err := p.resolveReleaseChart(ctx, r, h.HelmRelease)
	if err != nil {
		return "", false
	}
	return res.chart.version, true
}

// ReconcileHelmRelease reconciles one HelmRelease; its dependencies must already be Ready.
func (r *Reconciler) ReconcileHelmRelease(ctx context.Context, key types.NamespacedName) error {
	return r.reconcileOne(ctx, objKey{Kind: helmv2.HelmReleaseKind, NamespacedName: key})
}

// helmTimeout is the timeout of h's Helm actions: spec.timeout, else spec.interval, else
// defaultTimeout.
func helmTimeout(h *helmv2.HelmRelease) time.Duration {
	return timeoutOf(h.Spec.Timeout, h.Spec.Interval.Duration)
}

// helmConfig returns a Helm action configuration for the release namespace relNS, storing
// releases as Secrets there, talking to the cluster as h's ServiceAccount when it names one.
func (r *Reconciler) helmConfig(t *target, h *helmv2.HelmRelease, sa, relNS string, log *slog.Logger) (*action.Configuration, error) {
	cfg := action.NewConfiguration(action.ConfigurationSetLogger(log.Handler()))
	getter := newRESTGetter(restConfigAs(t, h.Namespace, sa), relNS)
	if err := cfg.Init(getter, relNS, "secret"); err != nil {
		return nil, fmt.Errorf("helm configuration: %w", err)
	}
	if kc, ok := cfg.KubeClient.(*kube.Client); ok {
		kc.Namespace = relNS
	}
	return cfg, nil
}

// releaseNames returns the Helm release's name and namespace, as Flux names them
// ([targetNamespace-]name, or spec.releaseName).
func releaseNames(h *helmv2.HelmRelease) (name, namespace string) {
	return h.GetReleaseName(), h.GetReleaseNamespace()
}

// helmChartName is the HelmChart Flux's helm-controller would make for h's spec.chart
// ("<namespace>/<name>"), or "" for a chartRef.
func helmChartName(h *helmv2.HelmRelease) string {
	if h.Spec.Chart == nil {
		return ""
	}
	ns := h.Spec.Chart.Spec.SourceRef.Namespace
	if ns == "" {
		ns = h.Namespace
	}
	return ns + "/" + h.GetHelmChartName()
}

// unsupportedHelmRelease names a field of h that asks for what sync does not do, or "".
func unsupportedHelmRelease(h *helmv2.HelmRelease) string {
	switch {
	case len(h.Spec.PostRenderers) > 0:
		return "spec.postRenderers is not supported yet"
	case h.Spec.StorageNamespace != "" && h.Spec.StorageNamespace != h.GetReleaseNamespace():
		return "spec.storageNamespace other than the release namespace is not supported yet"
	}
	for _, v := range h.Spec.ValuesFrom {
		if v.TargetPath != "" {
			return fmt.Sprintf("spec.valuesFrom %s %s: targetPath is not supported yet", v.Kind, v.Name)
		}
	}
	return ""
}

// reconcile does one reconciliation and updates h's status fields but its conditions.
func (hr helmRelease) reconcile(ctx context.Context, r *Reconciler, a attempt) outcome {
	h, p, log := hr.HelmRelease, a.pass, a.log
	if msg := unsupportedHelmRelease(h); msg != "" {
		return outcome{reason: api.UnsupportedReason, message: msg}.terminal()
	}
	if out, ok := r.crossNamespace(h.Namespace, helmReleaseRefs(h)); !ok {
		return out
	}
	sa := r.actor(ctx, p, keyOf(hr), h.Spec.ServiceAccountName)
	noHooks := r.noHooks(ctx, p, keyOf(hr))
	h.Status.HelmChart = helmChartName(h)
	res, err := p.resolveReleaseChart(ctx, r, h)
	if err != nil {
		return outcome{reason: sourceReason(err), message: err.Error()}
	}
	item := res.chart
	if msg := r.dependenciesReady(ctx, p, hr); msg != "" {
		return outcome{reason: meta.DependencyNotReadyReason, message: msg}
	}
	tgt, err := r.targetOf(ctx, h.Namespace, h.Spec.KubeConfig)
	if err != nil {
		return outcome{reason: helmv2.InstallFailedReason, message: fmt.Sprintf("chart %s %s: nothing released: %v", item.name, item.version, err)}
	}
	if out, ok := r.serviceAccountFound(ctx, tgt, h.Namespace, sa, helmv2.InstallFailedReason); !ok {
		return out
	}

	timeout := a.timeout
	outer := ctx // tests have their own timeout
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	ch, err := item.load(ctx, p.cache)
	if err != nil {
		return outcome{reason: meta.ArtifactFailedReason, message: fmt.Sprintf("chart %s %s: %v", item.name, item.version, err)}
	}
	if noHooks {
		if out, ok := hooksRefused(h, ch, sa); !ok {
			return out
		}
	}
	reader, err := r.readerAs(tgt, h.Namespace, sa)
	if err != nil {
		return outcome{reason: api.ValuesFailedReason, message: err.Error()}
	}
	vals, err := r.helmValues(ctx, reader, h)
	if err != nil {
		return failure(api.ValuesFailedReason, err.Error(), err)
	}
	sum, err := valuesChecksum(vals)
	if err != nil {
		return outcome{reason: api.ValuesFailedReason, message: err.Error()}
	}

	relName, relNS := releaseNames(h)
	if sa != "" {
		log.Debug("releasing", "as", serviceAccountUser(h.Namespace, sa))
	}
	cfg, err := r.helmConfig(tgt, h, sa, relNS, log)
	if err != nil {
		return outcome{reason: helmv2.InstallFailedReason, message: err.Error()}
	}
	last, lastErr := cfg.Releases.Last(relName)
	lastRel, _ := last.(*release.Release)
	if who, ok := releaseOwner(h, lastRel); !ok {
		return outcome{reason: api.ReleaseNotOwnedReason, message: fmt.Sprintf("release %s/%s%s exists and belongs to %s: not adopted, upgraded or uninstalled; give this HelmRelease another spec.releaseName or spec.targetNamespace", relNS, relName, tgt.in(), who)}
	}
	defer r.recordHistory(cfg, h, relName, log)

	changed := h.Status.LastAttemptedRevision != item.version || h.Status.LastAttemptedConfigDigest != sum
	attempt := func() {
		if changed {
			h.Status.InstallFailures, h.Status.UpgradeFailures = 0, 0
		}
		h.Status.LastAttemptedRevision = item.version
		h.Status.LastAttemptedConfigDigest = sum
	}
	// As Flux: each action waits for the release's objects unless it says disableWait.
	waitFor := func(disable bool) kube.WaitStrategy {
		if disable {
			return kube.HookOnlyStrategy
		}
		return kube.StatusWatcherStrategy
	}
	installWait := waitFor(h.Spec.Install != nil && h.Spec.Install.DisableWait)
	upgradeWait := waitFor(h.Spec.Upgrade != nil && h.Spec.Upgrade.DisableWait)
	rollbackWait := waitFor(h.Spec.Rollback != nil && h.Spec.Rollback.DisableWait)
	what := fmt.Sprintf("release %s/%s", relNS, relName) + tgt.in()

	if lastErr != nil && !errors.Is(lastErr, driver.ErrReleaseNotFound) {
		return outcome{reason: helmv2.InstallFailedReason, message: fmt.Sprintf("%s: read release history: %v", what, lastErr)}
	}
	// An uninstalled release whose history was kept (uninstall.keepHistory) is installed
	// again, replacing it.
	uninstalled := lastErr == nil && lastRel != nil && lastRel.Info != nil && lastRel.Info.Status == rcommon.StatusUninstalled
	if lastErr != nil || uninstalled { // no release yet: install
		retries := int64(0)
		if h.Spec.Install != nil && h.Spec.Install.Remediation != nil {
			retries = int64(h.Spec.Install.Remediation.Retries)
		}
		if !changed && h.Status.InstallFailures > retries {
			return outcome{reason: helmv2.InstallFailedReason, stalled: api.RetriesExceededReason, message: fmt.Sprintf("%s: install of chart %s %s failed %d times, retries exhausted; a new chart version or new values try again", what, ch.Name(), item.version, h.Status.InstallFailures)}
		}
		attempt()
		in := action.NewInstall(cfg)
		in.ReleaseName = relName
		in.Namespace = relNS
		in.Timeout = timeout
		in.WaitStrategy = installWait
		in.ServerSideApply = true
		in.Replace = uninstalled
		in.DisableHooks = noHooks || h.Spec.Install != nil && h.Spec.Install.DisableHooks
		in.Labels = ownerLabels(h)
		if _, err := in.RunWithContext(ctx, ch, vals); err != nil {
			h.Status.InstallFailures++
			msg := fmt.Sprintf("%s: install chart %s %s: %v", what, ch.Name(), item.version, err)
			msg += uninstallFailed(cfg, relName, timeout, noHooks)
			return outcome{reason: helmv2.InstallFailedReason, message: msg}
		}
		tested, msg := r.runTests(outer, cfg, h, relName, relNS, log)
		if msg != "" {
			h.Status.InstallFailures++
			msg = fmt.Sprintf("%s: chart %s %s installed, but %s", what, ch.Name(), item.version, msg)
			msg += uninstallFailed(cfg, relName, timeout, noHooks)
			return outcome{reason: helmv2.TestFailedReason, message: msg}
		}
		h.Status.InstallFailures, h.Status.UpgradeFailures = 0, 0
		return withTests(r.succeeded(cfg, what, relName, item.version), tested)
	}

	if lastRel != nil && lastRel.Info != nil && lastRel.Info.Status == rcommon.StatusDeployed &&
		lastRel.Chart != nil && lastRel.Chart.Metadata != nil && lastRel.Chart.Metadata.Version == item.version {
		if deployedSum, err := valuesChecksum(lastRel.Config); err == nil && deployedSum == sum {
			if !changed {
				h.Status.InstallFailures, h.Status.UpgradeFailures = 0, 0
			}
			at := fmt.Sprintf("%s at revision %d, chart %s %s", what, lastRel.Version, ch.Name(), item.version)
			if failed := failedTests(h, lastRel); failed != "" {
				// Until the chart version or the values change.
				return outcome{reason: helmv2.TestFailedReason, message: at + ": " + failed}.terminal()
			}
			return r.checkDrift(ctx, tgt, h, sa, lastRel, at, log)
		}
	}

	// As Flux: the last failure is rolled back when there were retries, unless told otherwise.
	retries := int64(0)
	remediateLast := false
	if h.Spec.Upgrade != nil && h.Spec.Upgrade.Remediation != nil {
		retries = int64(h.Spec.Upgrade.Remediation.Retries)
		remediateLast = retries > 0
		if h.Spec.Upgrade.Remediation.RemediateLastFailure != nil {
			remediateLast = *h.Spec.Upgrade.Remediation.RemediateLastFailure
		}
	}
	if !changed && h.Status.UpgradeFailures > retries {
		return outcome{reason: helmv2.UpgradeFailedReason, stalled: api.RetriesExceededReason, message: fmt.Sprintf("%s: upgrade to chart %s %s failed %d times, retries exhausted; a new chart version or new values try again", what, ch.Name(), item.version, h.Status.UpgradeFailures)}
	}
	previous := 0
	if dep, err := cfg.Releases.Deployed(relName); err == nil {
		if d, ok := dep.(*release.Release); ok {
			previous = d.Version
		}
	}
	attempt()
	up := action.NewUpgrade(cfg)
	up.Namespace = relNS
	up.Timeout = timeout
	up.WaitStrategy = upgradeWait
	up.ServerSideApply = "true"
	up.ResetValues = true
	up.MaxHistory = helmMaxHistory
	up.DisableHooks = noHooks || h.Spec.Upgrade != nil && h.Spec.Upgrade.DisableHooks
	up.Labels = ownerLabels(h)
	if _, err := up.RunWithContext(ctx, relName, ch, vals); err != nil {
		h.Status.UpgradeFailures++
		msg := fmt.Sprintf("%s: upgrade to chart %s %s: %v", what, ch.Name(), item.version, err)
		if h.Status.UpgradeFailures <= retries || remediateLast {
			msg += "; " + r.rollback(cfg, h, relName, previous, timeout, rollbackWait, noHooks)
		}
		return outcome{reason: helmv2.UpgradeFailedReason, message: msg}
	}
	tested, msg := r.runTests(outer, cfg, h, relName, relNS, log)
	if msg != "" {
		h.Status.UpgradeFailures++
		msg = fmt.Sprintf("%s: upgraded to chart %s %s, but %s", what, ch.Name(), item.version, msg)
		if h.Status.UpgradeFailures <= retries || remediateLast {
			msg += "; " + r.rollback(cfg, h, relName, previous, timeout, rollbackWait, noHooks)
		}
		return outcome{reason: helmv2.TestFailedReason, message: msg}
	}
	h.Status.InstallFailures, h.Status.UpgradeFailures = 0, 0
	return withTests(r.succeeded(cfg, what, relName, item.version), tested)
}

// finalize handles a deleted HelmRelease: unless it is suspended, its Helm release is
// uninstalled (spec.uninstall: keepHistory, disableHooks, timeout). When the uninstall fails,
// the cleanup fails with UninstallFailed.
func (hr helmRelease) finalize(ctx context.Context, r *Reconciler, a attempt) cleanup {
	h := hr.HelmRelease
	relName, relNS := releaseNames(h)
	what := fmt.Sprintf("release %s/%s", relNS, relName)
	if h.Spec.Suspend {
		return cleanup{reason: api.FinalizedReason, note: "suspended: " + what + " left installed"}
	}
	tgt, err := r.targetOf(ctx, h.Namespace, h.Spec.KubeConfig)
	if errors.Is(err, errKubeConfig) {
		return cleanup{warning: true, reason: helmv2.UninstallFailedReason, note: fmt.Sprintf("%v: %s left installed", err, what)}
	}
	if err != nil {
		return cleanup{failed: true, reason: helmv2.UninstallFailedReason, note: err.Error()}
	}
	what += tgt.in()
	sa := r.actor(ctx, a.pass, keyOf(hr), h.Spec.ServiceAccountName)
	if out, ok := r.serviceAccountFound(ctx, tgt, h.Namespace, sa, helmv2.UninstallFailedReason); !ok {
		if out.reason != api.ServiceAccountNotFoundReason {
			return cleanup{failed: true, reason: out.reason, note: out.message}
		}
		return cleanup{warning: true, reason: out.reason, note: fmt.Sprintf("%s: %s left installed", out.message, what)}
	}
	cfg, err := r.helmConfig(tgt, h, sa, relNS, a.log)
	if err != nil {
		return cleanup{failed: true, reason: helmv2.UninstallFailedReason, note: err.Error()}
	}
	last, _ := cfg.Releases.Last(relName) // none, or unreadable: the uninstall says why
	lastRel, _ := last.(*release.Release)
	if who, ok := releaseOwner(h, lastRel); !ok {
		return cleanup{warning: true, reason: api.ReleaseNotOwnedReason, note: fmt.Sprintf("%s belongs to %s: left installed", what, who)}
	}
	un := action.NewUninstall(cfg)
	un.IgnoreNotFound = true
	un.WaitStrategy = kube.HookOnlyStrategy
	un.DeletionPropagation = string(metav1.DeletePropagationBackground)
	un.Timeout = a.timeout
	if u := h.Spec.Uninstall; u != nil {
		if u.Timeout != nil && u.Timeout.Duration > 0 {
			un.Timeout = u.Timeout.Duration
		}
		un.KeepHistory = u.KeepHistory
		un.DisableHooks = u.DisableHooks
	}
	un.DisableHooks = un.DisableHooks || r.noHooks(ctx, a.pass, keyOf(hr))
	resp, err := un.Run(relName)
	if err != nil {
		return cleanup{failed: true, reason: helmv2.UninstallFailedReason, note: fmt.Sprintf("uninstall %s of the deleted helmrelease: %v", what, err)}
	}
	c := cleanup{reason: api.FinalizedReason}
	switch {
	case resp == nil:
		c.note = what + " was not installed"
	case un.KeepHistory:
		c.note = "uninstalled " + what + ", history kept"
	default:
		c.note = "uninstalled " + what
	}
	return c
}

// uninstallFailed uninstalls a release whose install failed, so the next pass can install
// afresh, and returns what to append to the failure's message: "; uninstalled", or why the
// uninstall failed too.
func uninstallFailed(cfg *action.Configuration, relName string, timeout time.Duration, noHooks bool) string {
	un := action.NewUninstall(cfg)
	un.DisableHooks = noHooks
	un.IgnoreNotFound = true
	un.WaitStrategy = kube.HookOnlyStrategy
	un.Timeout = timeout
	if _, err := un.Run(relName); err != nil {
		return fmt.Sprintf("; uninstall of the failed release failed: %v", err)
	}
	return "; uninstalled"
}

// rollback rolls the release back to revision (0: the one before the last) and says how it went.
func (r *Reconciler) rollback(cfg *action.Configuration, h *helmv2.HelmRelease, relName string, revision int, timeout time.Duration, ws kube.WaitStrategy, noHooks bool) string {
	rb := action.NewRollback(cfg)
	rb.Version = revision
	rb.Timeout = timeout
	rb.WaitStrategy = ws
	rb.ServerSideApply = "auto"
	rb.MaxHistory = helmMaxHistory
	if s := h.Spec.Rollback; s != nil {
		if s.Timeout != nil && s.Timeout.Duration > 0 {
			rb.Timeout = s.Timeout.Duration
		}
		rb.DisableHooks = s.DisableHooks
		rb.CleanupOnFail = s.CleanupOnFail
	}
	rb.DisableHooks = rb.DisableHooks || noHooks
	target := "the previous revision"
	if revision > 0 {
		target = fmt.Sprintf("revision %d", revision)
	}
	if err := rb.Run(relName); err != nil {
		return fmt.Sprintf("rollback to %s failed: %v", target, err)
	}
	return "rolled back to " + target
}

// succeeded reads the release just made and reports it.
func (r *Reconciler) succeeded(cfg *action.Configuration, what, relName, version string) outcome {
	rev := 0
	if last, err := cfg.Releases.Last(relName); err == nil {
		if l, ok := last.(*release.Release); ok {
			rev = l.Version
		}
	}
	return outcome{ready: true, reason: meta.ReconciliationSucceededReason, message: fmt.Sprintf("%s at revision %d, chart version %s", what, rev, version)}
}

// recordHistory writes the release's latest revisions into h's status, newest first.
func (r *Reconciler) recordHistory(cfg *action.Configuration, h *helmv2.HelmRelease, relName string, log *slog.Logger) {
	rels, err := cfg.Releases.History(relName)
	if err != nil {
		if !errors.Is(err, driver.ErrReleaseNotFound) {
			log.Warn("read release history", "error", err)
		}
		h.Status.History = nil
		return
	}
	var snaps helmv2.Snapshots
	for _, x := range rels {
		rel, ok := x.(*release.Release)
		if !ok || rel == nil {
			continue
		}
		snaps = append(snaps, snapshotOf(rel))
	}
	sort.Slice(snaps, func(i, j int) bool { return snaps[i].Version > snaps[j].Version })
	if len(snaps) > statusHistory {
		snaps = snaps[:statusHistory]
	}
	h.Status.History = snaps
}

// helmValues merges the values of valuesFrom, in order, then the inline values.
func (r *Reconciler) helmValues(ctx context.Context, c client.Reader, h *helmv2.HelmRelease) (map[string]any, error) {
	vals := map[string]any{}
	for _, ref := range h.Spec.ValuesFrom {
		key := ref.ValuesKey
		if key == "" {
			key = defaultValuesKey
		}
		where := fmt.Sprintf("valuesFrom %s %s/%s key %s", ref.Kind, h.Namespace, ref.Name, key)
		d, ok, err := lookupRef(ctx, c, h.Namespace, ref.Kind, ref.Name, ref.Optional)
		switch {
		case errors.Is(err, errRefKind):
			return nil, terminalError{fmt.Errorf("%s: kind %q is not supported (ConfigMap or Secret)", where, ref.Kind)}
		case err != nil:
			return nil, fmt.Errorf("%s: %w", where, err)
		case !ok:
			continue
		}
		data, found := d.data[key]
		if !found {
			data, found = d.binary[key]
		}
		if !found {
			if ref.Optional {
				continue
			}
			return nil, fmt.Errorf("%s: no such key", where)
		}
		var m map[string]any
		if err := yaml.Unmarshal(data, &m); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		vals = mergeValues(vals, m)
	}
	if h.Spec.Values != nil && len(h.Spec.Values.Raw) > 0 {
		var m map[string]any
		if err := json.Unmarshal(h.Spec.Values.Raw, &m); err != nil {
			return nil, fmt.Errorf("values: %w", err)
		}
		vals = mergeValues(vals, m)
	}
	return vals, nil
}

// mergeValues merges src over dst: maps merge key by key, anything else in src replaces.
func mergeValues(dst, src map[string]any) map[string]any {
	for k, v := range src {
		if sm, ok := v.(map[string]any); ok {
			if dm, ok := dst[k].(map[string]any); ok {
				dst[k] = mergeValues(dm, sm)
				continue
			}
		}
		dst[k] = v
	}
	return dst
}

// valuesChecksum is the SHA-256 of the values as JSON (keys sorted); nil counts as empty.
func valuesChecksum(vals map[string]any) (string, error) {
	if vals == nil {
		vals = map[string]any{}
	}
	b, err := json.Marshal(vals)
	if err != nil {
		return "", fmt.Errorf("values: %w", err)
	}
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:]), nil
}

// snapshotOf is a release revision as Flux's status history records it.
func snapshotOf(rel *release.Release) *helmv2.Snapshot {
	s := &helmv2.Snapshot{Name: rel.Name, Namespace: rel.Namespace, Version: rel.Version}
	if rel.Chart != nil && rel.Chart.Metadata != nil {
		s.ChartName, s.ChartVersion, s.AppVersion = rel.Chart.Metadata.Name, rel.Chart.Metadata.Version, rel.Chart.Metadata.AppVersion
	}
	if sum, err := valuesChecksum(rel.Config); err == nil {
		s.ConfigDigest = sum
	}
	s.Digest = releaseDigest(rel)
	if rel.Info != nil {
		s.Status = string(rel.Info.Status)
		s.FirstDeployed, s.LastDeployed = metav1.NewTime(rel.Info.FirstDeployed), metav1.NewTime(rel.Info.LastDeployed)
		if !rel.Info.Deleted.IsZero() {
			s.Deleted = metav1.NewTime(rel.Info.Deleted)
		}
		switch d := rel.Info.Description; {
		case strings.HasPrefix(d, "Rollback"):
			s.Action = helmv2.ReleaseActionRollback
		case strings.HasPrefix(d, "Install"):
			s.Action = helmv2.ReleaseActionInstall
		case strings.HasPrefix(d, "Upgrade"):
			s.Action = helmv2.ReleaseActionUpgrade
		case strings.HasPrefix(d, "Uninstall"):
			s.Action = helmv2.ReleaseActionUninstall
		}
	}
	return s
}

// releaseDigest is the SHA-256 of a revision's name, version, chart and manifest, which
// identifies it in the status history.
func releaseDigest(rel *release.Release) string {
	sum := sha256.New()
	fmt.Fprintf(sum, "%s\n%d\n", rel.Name, rel.Version)
	if rel.Chart != nil && rel.Chart.Metadata != nil {
		fmt.Fprintf(sum, "%s\n%s\n", rel.Chart.Metadata.Name, rel.Chart.Metadata.Version)
	}
	sum.Write([]byte(rel.Manifest))
	return "sha256:" + hex.EncodeToString(sum.Sum(nil))
}

// Labels a release carries (on its storage Secrets) naming the HelmRelease that made it, as
// Flux's helm-controller names it.
const (
	releaseOwnerName      = "helm.toolkit.fluxcd.io/name"
	releaseOwnerNamespace = "helm.toolkit.fluxcd.io/namespace"
)

// ownerLabels are the labels of releases h makes.
func ownerLabels(h *helmv2.HelmRelease) map[string]string {
	return map[string]string{releaseOwnerName: h.Name, releaseOwnerNamespace: h.Namespace}
}

// releaseOwner reports whether rel, the latest revision of h's release (nil: none), is h's:
// it carries h's owner labels, or (made before releases were labelled) it carries none and
// h's history records it. Otherwise who names its owner: another HelmRelease, or none.
func releaseOwner(h *helmv2.HelmRelease, rel *release.Release) (who string, ok bool) {
	if rel == nil {
		return "", true
	}
	name, ns := rel.Labels[releaseOwnerName], rel.Labels[releaseOwnerNamespace]
	switch {
	case name == h.Name && ns == h.Namespace:
		return "", true
	case name != "" || ns != "":
		return fmt.Sprintf("HelmRelease %s/%s", ns, name), false
	}
	for _, s := range h.Status.History {
		if s.Name == rel.Name && s.Namespace == rel.Namespace {
			return "", true
		}
	}
	return "no HelmRelease (made by hand, or by another tool)", false
}
