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
	"time"

	"github.com/Masterminds/semver/v3"
	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/kube"
	rcommon "helm.sh/helm/v4/pkg/release/common"
	release "helm.sh/helm/v4/pkg/release/v1"
	"helm.sh/helm/v4/pkg/storage/driver"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	ferryv1 "github.com/ferry-gitops/ferry/api/v1alpha1"
)

// helmMaxHistory is how many revisions Helm keeps of a release.
const helmMaxHistory = 10

// statusHistory is how many revisions a HelmRelease's status lists.
const statusHistory = 5

// ReconcileHelmRelease reconciles one HelmRelease; its dependencies must already be Ready.
func (r *Reconciler) ReconcileHelmRelease(ctx context.Context, key types.NamespacedName) error {
	p, err := r.newPass(ctx)
	if err != nil {
		return err
	}
	h, ok := p.helmReleases[key]
	if !ok {
		return fmt.Errorf("helmrelease %s: not found", key)
	}
	return r.reconcileHelmRelease(ctx, p, h)
}

func (r *Reconciler) reconcileHelmRelease(ctx context.Context, p *pass, h *ferryv1.HelmRelease) error {
	return r.reconcileObject(ctx, p, helmReleaseKey(h), h, h.Spec.Suspend,
		statusRefs{&h.Status.Conditions, &h.Status.ObservedGeneration, &h.Status.LastHandledReconcileAt, &h.Status.LastAppliedRevision},
		func(log *slog.Logger) error { return r.finalizeHelmRelease(ctx, h, log) },
		func(log *slog.Logger) outcome { return r.runHelmRelease(ctx, p, h, log) })
}

// helmTimeout is the timeout of h's Helm actions: spec.timeout, else spec.interval, else
// defaultTimeout.
func helmTimeout(h *ferryv1.HelmRelease) time.Duration {
	if h.Spec.Timeout != nil && h.Spec.Timeout.Duration > 0 {
		return h.Spec.Timeout.Duration
	}
	if h.Spec.Interval.Duration > 0 {
		return h.Spec.Interval.Duration
	}
	return defaultTimeout
}

// helmConfig returns a Helm action configuration for the release namespace relNS, storing
// releases as Secrets there, talking to the cluster as h's ServiceAccount when it names one.
func (r *Reconciler) helmConfig(h *ferryv1.HelmRelease, relNS string, log *slog.Logger) (*action.Configuration, error) {
	cfg := action.NewConfiguration(action.ConfigurationSetLogger(log.Handler()))
	getter := newRESTGetter(r.restConfigAs(h.Namespace, h.Spec.ServiceAccountName), relNS)
	if err := cfg.Init(getter, relNS, "secret"); err != nil {
		return nil, fmt.Errorf("helm configuration: %w", err)
	}
	if kc, ok := cfg.KubeClient.(*kube.Client); ok {
		kc.Namespace = relNS
	}
	return cfg, nil
}

// releaseNames returns the Helm release's name and namespace.
func releaseNames(h *ferryv1.HelmRelease) (name, namespace string) {
	namespace = h.Namespace
	name = h.Name
	if h.Spec.TargetNamespace != "" {
		namespace = h.Spec.TargetNamespace
		name = h.Spec.TargetNamespace + "-" + h.Name
	}
	if h.Spec.ReleaseName != "" {
		name = h.Spec.ReleaseName
	}
	return name, namespace
}

// runHelmRelease does one reconciliation and updates h's status fields but its Ready condition.
func (r *Reconciler) runHelmRelease(ctx context.Context, p *pass, h *ferryv1.HelmRelease, log *slog.Logger) outcome {
	if c, ok := p.cycles[helmReleaseKey(h)]; ok {
		return outcome{reason: ferryv1.DependencyCycleReason, message: "dependency cycle: " + c}
	}
	item, err := p.chart(ctx, h.Spec.Chart.Name)
	if err != nil {
		reason := ferryv1.ChartLoadFailedReason
		if errors.Is(err, errSourceNotFound) {
			reason = ferryv1.ChartNotFoundReason
		}
		return outcome{reason: reason, message: fmt.Sprintf("chart %s: %v", h.Spec.Chart.Name, err)}
	}
	if h.Spec.Chart.Version != "" {
		c, err := semver.NewConstraint(h.Spec.Chart.Version)
		if err != nil {
			return outcome{reason: ferryv1.ChartNotFoundReason, message: fmt.Sprintf("chart %s: version %q is not a semver constraint: %v", item.name, h.Spec.Chart.Version, err)}
		}
		v, err := semver.NewVersion(item.version)
		if err != nil || !c.Check(v) {
			return outcome{reason: ferryv1.ChartNotFoundReason, message: fmt.Sprintf("chart %s: the cached version %s does not satisfy %q", item.name, item.version, h.Spec.Chart.Version)}
		}
	}
	for _, d := range dependencyKeys(ferryv1.HelmReleaseKind, h.Namespace, h.Spec.DependsOn) {
		if msg := r.dependencyReady(ctx, p, d, ferryv1.HelmReleaseKind); msg != "" {
			return outcome{reason: ferryv1.DependencyNotReadyReason, message: msg}
		}
	}
	if out, ok := r.serviceAccountFound(ctx, h.Namespace, h.Spec.ServiceAccountName, ferryv1.InstallFailedReason); !ok {
		return out
	}

	timeout := helmTimeout(h)
	outer := ctx // tests have their own timeout
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	ch, err := item.load(ctx, p.cache)
	if err != nil {
		return outcome{reason: ferryv1.ChartLoadFailedReason, message: fmt.Sprintf("chart %s %s: %v", item.name, item.version, err)}
	}
	vals, err := r.helmValues(ctx, h)
	if err != nil {
		return outcome{reason: ferryv1.ValuesFailedReason, message: err.Error()}
	}
	sum, err := valuesChecksum(vals)
	if err != nil {
		return outcome{reason: ferryv1.ValuesFailedReason, message: err.Error()}
	}

	relName, relNS := releaseNames(h)
	cfg, err := r.helmConfig(h, relNS, log)
	if err != nil {
		return outcome{reason: ferryv1.InstallFailedReason, message: err.Error()}
	}
	defer r.recordHistory(cfg, h, relName, log)

	changed := h.Status.LastAttemptedRevision != item.version || h.Status.LastAttemptedValuesChecksum != sum
	attempt := func() {
		if changed {
			h.Status.InstallFailures, h.Status.UpgradeFailures = 0, 0
		}
		h.Status.LastAttemptedRevision = item.version
		h.Status.LastAttemptedValuesChecksum = sum
	}
	waitStrategy := kube.HookOnlyStrategy
	if h.Spec.Wait {
		waitStrategy = kube.StatusWatcherStrategy
	}
	what := fmt.Sprintf("release %s/%s", relNS, relName)

	last, err := cfg.Releases.Last(relName)
	if err != nil && !errors.Is(err, driver.ErrReleaseNotFound) {
		return outcome{reason: ferryv1.InstallFailedReason, message: fmt.Sprintf("%s: read release history: %v", what, err)}
	}
	lastRel, _ := last.(*release.Release)
	// An uninstalled release whose history was kept (uninstall.keepHistory) is installed
	// again, replacing it.
	uninstalled := err == nil && lastRel != nil && lastRel.Info != nil && lastRel.Info.Status == rcommon.StatusUninstalled
	if err != nil || uninstalled { // no release yet: install
		retries := int64(0)
		if h.Spec.Install != nil && h.Spec.Install.Remediation != nil {
			retries = int64(h.Spec.Install.Remediation.Retries)
		}
		if !changed && h.Status.InstallFailures > retries {
			return outcome{reason: ferryv1.InstallFailedReason, message: fmt.Sprintf("%s: install of chart %s %s failed %d times, retries exhausted; a new chart version or new values try again", what, ch.Name(), item.version, h.Status.InstallFailures)}
		}
		attempt()
		in := action.NewInstall(cfg)
		in.ReleaseName = relName
		in.Namespace = relNS
		in.Timeout = timeout
		in.WaitStrategy = waitStrategy
		in.ServerSideApply = true
		in.Replace = uninstalled
		if _, err := in.RunWithContext(ctx, ch, vals); err != nil {
			h.Status.InstallFailures++
			msg := fmt.Sprintf("%s: install chart %s %s: %v", what, ch.Name(), item.version, err)
			msg += uninstallFailed(cfg, relName, timeout)
			return outcome{reason: ferryv1.InstallFailedReason, message: msg}
		}
		tested, msg := r.runTests(outer, cfg, h, relName, relNS, log)
		if msg != "" {
			h.Status.InstallFailures++
			msg = fmt.Sprintf("%s: chart %s %s installed, but %s", what, ch.Name(), item.version, msg)
			msg += uninstallFailed(cfg, relName, timeout)
			return outcome{reason: ferryv1.TestFailedReason, message: msg}
		}
		h.Status.InstallFailures, h.Status.UpgradeFailures = 0, 0
		h.Status.LastAppliedRevision = item.version
		return withTests(r.succeeded(cfg, what, relName, item.version), tested)
	}

	if lastRel != nil && lastRel.Info != nil && lastRel.Info.Status == rcommon.StatusDeployed &&
		lastRel.Chart != nil && lastRel.Chart.Metadata != nil && lastRel.Chart.Metadata.Version == item.version {
		if deployedSum, err := valuesChecksum(lastRel.Config); err == nil && deployedSum == sum {
			h.Status.LastAppliedRevision = item.version
			if !changed {
				h.Status.InstallFailures, h.Status.UpgradeFailures = 0, 0
			}
			at := fmt.Sprintf("%s at revision %d, chart %s %s", what, lastRel.Version, ch.Name(), item.version)
			if failed := failedTests(h, lastRel); failed != "" {
				return outcome{reason: ferryv1.TestFailedReason, message: at + ": " + failed}
			}
			return r.checkDrift(ctx, h, lastRel, at, log)
		}
	}

	retries := int64(0)
	remediateLast := true
	if h.Spec.Upgrade != nil && h.Spec.Upgrade.Remediation != nil {
		retries = int64(h.Spec.Upgrade.Remediation.Retries)
		if h.Spec.Upgrade.Remediation.RemediateLastFailure != nil {
			remediateLast = *h.Spec.Upgrade.Remediation.RemediateLastFailure
		}
	}
	if !changed && h.Status.UpgradeFailures > retries {
		return outcome{reason: ferryv1.UpgradeFailedReason, message: fmt.Sprintf("%s: upgrade to chart %s %s failed %d times, retries exhausted; a new chart version or new values try again", what, ch.Name(), item.version, h.Status.UpgradeFailures)}
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
	up.WaitStrategy = waitStrategy
	up.ServerSideApply = "true"
	up.ResetValues = true
	up.MaxHistory = helmMaxHistory
	if _, err := up.RunWithContext(ctx, relName, ch, vals); err != nil {
		h.Status.UpgradeFailures++
		msg := fmt.Sprintf("%s: upgrade to chart %s %s: %v", what, ch.Name(), item.version, err)
		if h.Status.UpgradeFailures <= retries || remediateLast {
			msg += "; " + r.rollback(cfg, h, relName, previous, timeout, waitStrategy)
		}
		return outcome{reason: ferryv1.UpgradeFailedReason, message: msg}
	}
	tested, msg := r.runTests(outer, cfg, h, relName, relNS, log)
	if msg != "" {
		h.Status.UpgradeFailures++
		msg = fmt.Sprintf("%s: upgraded to chart %s %s, but %s", what, ch.Name(), item.version, msg)
		if h.Status.UpgradeFailures <= retries || remediateLast {
			msg += "; " + r.rollback(cfg, h, relName, previous, timeout, waitStrategy)
		}
		return outcome{reason: ferryv1.TestFailedReason, message: msg}
	}
	h.Status.InstallFailures, h.Status.UpgradeFailures = 0, 0
	h.Status.LastAppliedRevision = item.version
	return withTests(r.succeeded(cfg, what, relName, item.version), tested)
}

// uninstallFailed uninstalls a release whose install failed, so the next pass can install
// afresh, and returns what to append to the failure's message: "; uninstalled", or why the
// uninstall failed too.
func uninstallFailed(cfg *action.Configuration, relName string, timeout time.Duration) string {
	un := action.NewUninstall(cfg)
	un.IgnoreNotFound = true
	un.WaitStrategy = kube.HookOnlyStrategy
	un.Timeout = timeout
	if _, err := un.Run(relName); err != nil {
		return fmt.Sprintf("; uninstall of the failed release failed: %v", err)
	}
	return "; uninstalled"
}

// rollback rolls the release back to revision (0: the one before the last) and says how it went.
func (r *Reconciler) rollback(cfg *action.Configuration, h *ferryv1.HelmRelease, relName string, revision int, timeout time.Duration, ws kube.WaitStrategy) string {
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
	return outcome{ready: true, reason: ferryv1.ReconciliationSucceededReason, message: fmt.Sprintf("%s at revision %d, chart version %s", what, rev, version)}
}

// recordHistory writes the release's latest revisions into h's status, newest first.
func (r *Reconciler) recordHistory(cfg *action.Configuration, h *ferryv1.HelmRelease, relName string, log *slog.Logger) {
	rels, err := cfg.Releases.History(relName)
	if err != nil {
		if !errors.Is(err, driver.ErrReleaseNotFound) {
			log.Warn("read release history", "error", err)
		}
		h.Status.History = nil
		return
	}
	var snaps []ferryv1.HelmReleaseSnapshot
	for _, x := range rels {
		rel, ok := x.(*release.Release)
		if !ok || rel == nil {
			continue
		}
		s := ferryv1.HelmReleaseSnapshot{Version: rel.Version}
		if rel.Chart != nil && rel.Chart.Metadata != nil {
			s.ChartName, s.ChartVersion = rel.Chart.Metadata.Name, rel.Chart.Metadata.Version
		}
		if rel.Info != nil {
			s.Status, s.Description = string(rel.Info.Status), truncate(rel.Info.Description, 1000)
		}
		snaps = append(snaps, s)
	}
	sort.Slice(snaps, func(i, j int) bool { return snaps[i].Version > snaps[j].Version })
	if len(snaps) > statusHistory {
		snaps = snaps[:statusHistory]
	}
	h.Status.History = snaps
}

// helmValues merges the values of valuesFrom, in order, then the inline values.
func (r *Reconciler) helmValues(ctx context.Context, h *ferryv1.HelmRelease) (map[string]any, error) {
	vals := map[string]any{}
	for _, ref := range h.Spec.ValuesFrom {
		key := ref.ValuesKey
		if key == "" {
			key = ferryv1.DefaultValuesKey
		}
		where := fmt.Sprintf("valuesFrom %s %s/%s key %s", ref.Kind, h.Namespace, ref.Name, key)
		nn := types.NamespacedName{Namespace: h.Namespace, Name: ref.Name}
		var (
			data  []byte
			found bool
		)
		switch ref.Kind {
		case "ConfigMap":
			var cm corev1.ConfigMap
			if err := r.client.Get(ctx, nn, &cm); err != nil {
				if apierrors.IsNotFound(err) && ref.Optional {
					continue
				}
				return nil, fmt.Errorf("%s: %w", where, err)
			}
			if s, ok := cm.Data[key]; ok {
				data, found = []byte(s), true
			} else if b, ok := cm.BinaryData[key]; ok {
				data, found = b, true
			}
		case "Secret":
			var sec corev1.Secret
			if err := r.client.Get(ctx, nn, &sec); err != nil {
				if apierrors.IsNotFound(err) && ref.Optional {
					continue
				}
				return nil, fmt.Errorf("%s: %w", where, err)
			}
			data, found = sec.Data[key]
		default:
			return nil, fmt.Errorf("%s: kind %q is not supported (ConfigMap or Secret)", where, ref.Kind)
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
