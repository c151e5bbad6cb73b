package v1alpha1

import (
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// HelmReleaseKind is the kind of HelmRelease objects.
const HelmReleaseKind = "HelmRelease"

// Reasons of a HelmRelease's Ready condition, besides ReconciliationSucceededReason,
// DependencyNotReadyReason, DependencyCycleReason and ServiceAccountNotFoundReason, which it
// shares with the Kustomization, and UninstallFailedReason.
const (
	// ChartNotFoundReason: the cache's current bundle has no chart item of that name, or its
	// version does not satisfy spec.chart.version.
	ChartNotFoundReason = "ChartNotFound"
	// ChartLoadFailedReason: the chart archive could not be read or loaded.
	ChartLoadFailedReason = "ChartLoadFailed"
	// ValuesFailedReason: a valuesFrom source is missing or does not parse.
	ValuesFailedReason = "ValuesFailed"
	// InstallFailedReason: the first install of the release failed.
	InstallFailedReason = "InstallFailed"
	// UpgradeFailedReason: an upgrade failed (and was rolled back, unless that was turned off).
	UpgradeFailedReason = "UpgradeFailed"
	// TestFailedReason: with spec.test.enable, the release's tests failed after an install
	// (which was uninstalled) or an upgrade (which was rolled back), or the deployed revision's
	// tests had failed.
	TestFailedReason = "TestFailed"
	// DriftCorrectionFailedReason: objects of the release drifted from its manifest and could
	// not be checked or put back.
	DriftCorrectionFailedReason = "DriftCorrectionFailed"
	// DriftDetectedReason: the Warning Event recorded when, with driftDetection mode warn,
	// objects of the release differ from its manifest (they are left as they are).
	DriftDetectedReason = "DriftDetected"
	// RetriesExceededReason: the reason of Stalled=True when the install or upgrade
	// remediation retries are exhausted (as Flux's helm-controller); Ready says which.
	RetriesExceededReason = "RetriesExceeded"
)

// Modes of spec.driftDetection.
const (
	// DriftDetectionEnabled: objects of the release that differ from its manifest are put back
	// (the default).
	DriftDetectionEnabled = "enabled"
	// DriftDetectionWarn: differences are reported (log line and Warning Event), not corrected.
	DriftDetectionWarn = "warn"
	// DriftDetectionDisabled: the cluster is not compared with the release's manifest.
	DriftDetectionDisabled = "disabled"
)

// DefaultValuesKey is the key of a valuesFrom ConfigMap or Secret read when valuesKey is empty.
const DefaultValuesKey = "values.yaml"

// HelmRelease installs a chart of the cache's current bundle as a Helm release and upgrades it
// when the chart's version or the values change.
type HelmRelease struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   HelmReleaseSpec   `json:"spec,omitempty"`
	Status HelmReleaseStatus `json:"status,omitempty"`
}

// HelmReleaseSpec is which chart to release, with which values, and how.
type HelmReleaseSpec struct {
	// Chart names the chart item of the cache's current bundle.
	Chart HelmChartReference `json:"chart"`
	// ReleaseName is the Helm release's name (default: [targetNamespace-]name).
	ReleaseName string `json:"releaseName,omitempty"`
	// TargetNamespace is the namespace of the release and its objects (default: the
	// HelmRelease's namespace). It must exist.
	TargetNamespace string `json:"targetNamespace,omitempty"`
	// Interval is the longest the HelmRelease goes without being reconciled (as a
	// Kustomization's).
	Interval metav1.Duration `json:"interval"`
	// Values are merged over the chart's values, after ValuesFrom.
	Values *apiextensionsv1.JSON `json:"values,omitempty"`
	// ValuesFrom lists ConfigMaps and Secrets of the HelmRelease's namespace holding values,
	// merged in order.
	ValuesFrom []ValuesReference `json:"valuesFrom,omitempty"`
	// DependsOn lists Kustomizations and HelmReleases that must be Ready at their current
	// revision first.
	DependsOn []DependencyReference `json:"dependsOn,omitempty"`
	// Install configures the first install.
	Install *HelmInstall `json:"install,omitempty"`
	// Upgrade configures upgrades.
	Upgrade *HelmUpgrade `json:"upgrade,omitempty"`
	// Rollback configures the rollback that follows a failed upgrade.
	Rollback *HelmRollback `json:"rollback,omitempty"`
	// Suspend stops reconciliation; the status is left as it is.
	Suspend bool `json:"suspend,omitempty"`
	// Timeout bounds each Helm action (default: Interval).
	Timeout *metav1.Duration `json:"timeout,omitempty"`
	// Wait waits for the release's objects to become ready before an install or upgrade counts
	// as successful; otherwise only hooks are waited for.
	Wait bool `json:"wait,omitempty"`
	// Uninstall configures the uninstall done when the HelmRelease is deleted.
	Uninstall *HelmUninstall `json:"uninstall,omitempty"`
	// Test configures running the chart's tests (helm test) after an install or upgrade.
	Test *HelmTest `json:"test,omitempty"`
	// DriftDetection configures the comparison of the release's objects in the cluster with
	// its manifest when the release is up to date (default mode: enabled).
	DriftDetection *HelmDriftDetection `json:"driftDetection,omitempty"`
	// ServiceAccountName is a ServiceAccount of the HelmRelease's namespace: when set, every
	// Helm action (and drift correction) runs as that ServiceAccount (impersonating
	// system:serviceaccount:<namespace>:<name>), so the release is bound by its RBAC.
	ServiceAccountName string `json:"serviceAccountName,omitempty"`
}

// HelmUninstall configures the uninstall of a deleted HelmRelease's release.
type HelmUninstall struct {
	// Timeout bounds the uninstall (default: the HelmRelease's timeout).
	Timeout *metav1.Duration `json:"timeout,omitempty"`
	// DisableHooks skips the chart's delete hooks.
	DisableHooks bool `json:"disableHooks,omitempty"`
	// KeepHistory keeps the release's history (its storage Secrets, marked uninstalled).
	KeepHistory bool `json:"keepHistory,omitempty"`
}

// HelmTest configures the chart's tests.
type HelmTest struct {
	// Enable runs the chart's test hooks after every successful install or upgrade.
	Enable bool `json:"enable,omitempty"`
	// Timeout bounds the tests (default: the HelmRelease's timeout).
	Timeout *metav1.Duration `json:"timeout,omitempty"`
	// IgnoreFailures makes failed tests count as passed (they are still logged).
	IgnoreFailures bool `json:"ignoreFailures,omitempty"`
}

// HelmDriftDetection configures drift detection.
type HelmDriftDetection struct {
	// Mode is enabled (correct drift, the default), warn (report it) or disabled.
	Mode string `json:"mode,omitempty"`
}

// HelmChartReference names a chart item of the cache.
type HelmChartReference struct {
	// Name is the bundle item's name.
	Name string `json:"name"`
	// Version is an optional semver constraint the cached chart's version must satisfy.
	Version string `json:"version,omitempty"`
}

// ValuesReference names a ConfigMap or Secret key holding values as YAML.
type ValuesReference struct {
	// Kind is ConfigMap or Secret.
	Kind string `json:"kind"`
	// Name is the object's name, in the HelmRelease's namespace.
	Name string `json:"name"`
	// ValuesKey is the data key (default values.yaml).
	ValuesKey string `json:"valuesKey,omitempty"`
	// Optional makes a missing object or key count as no values instead of an error.
	Optional bool `json:"optional,omitempty"`
}

// HelmInstall configures the first install.
type HelmInstall struct {
	Remediation *HelmInstallRemediation `json:"remediation,omitempty"`
}

// HelmInstallRemediation says how often a failed install is retried; a failed install is
// always uninstalled.
type HelmInstallRemediation struct {
	// Retries is how many times a failed install is tried again before the reconciler gives
	// up until the chart version or the values change.
	Retries int `json:"retries,omitempty"`
}

// HelmUpgrade configures upgrades.
type HelmUpgrade struct {
	Remediation *HelmUpgradeRemediation `json:"remediation,omitempty"`
}

// HelmUpgradeRemediation says how often a failed upgrade is retried and whether the last
// failure is rolled back.
type HelmUpgradeRemediation struct {
	// Retries is how many times a failed upgrade is tried again (each failure is rolled back
	// first) before the reconciler gives up until the chart version or the values change.
	Retries int `json:"retries,omitempty"`
	// RemediateLastFailure rolls back the failure that exhausts the retries (default true).
	RemediateLastFailure *bool `json:"remediateLastFailure,omitempty"`
}

// HelmRollback configures the rollback of a failed upgrade.
type HelmRollback struct {
	// Timeout bounds the rollback (default: the HelmRelease's timeout).
	Timeout *metav1.Duration `json:"timeout,omitempty"`
	// DisableHooks skips the chart's rollback hooks.
	DisableHooks bool `json:"disableHooks,omitempty"`
	// CleanupOnFail deletes objects the failed upgrade created.
	CleanupOnFail bool `json:"cleanupOnFail,omitempty"`
}

// HelmReleaseStatus is what the reconciler observed and did.
type HelmReleaseStatus struct {
	// ObservedGeneration is the generation of the spec last reconciled.
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions holds Ready, and Reconciling or Stalled while they are True (kstatus).
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// LastAppliedRevision is the chart version last installed or upgraded to successfully.
	LastAppliedRevision string `json:"lastAppliedRevision,omitempty"`
	// LastAttemptedRevision is the chart version of the last install or upgrade attempt.
	LastAttemptedRevision string `json:"lastAttemptedRevision,omitempty"`
	// LastAttemptedValuesChecksum is the SHA-256 of the merged values of the last attempt.
	LastAttemptedValuesChecksum string `json:"lastAttemptedValuesChecksum,omitempty"`
	// InstallFailures counts failed installs of the last attempted chart version and values.
	InstallFailures int64 `json:"installFailures,omitempty"`
	// UpgradeFailures counts failed upgrades of the last attempted chart version and values.
	UpgradeFailures int64 `json:"upgradeFailures,omitempty"`
	// History lists the release's latest revisions, newest first.
	History []HelmReleaseSnapshot `json:"history,omitempty"`
	// LastHandledReconcileAt is the value of the reconcile.ferry.dev/requestedAt annotation
	// the reconciler last handled.
	LastHandledReconcileAt string `json:"lastHandledReconcileAt,omitempty"`
}

// HelmReleaseSnapshot is one revision of the Helm release.
type HelmReleaseSnapshot struct {
	// Version is the release revision.
	Version int `json:"version"`
	// ChartName and ChartVersion are the revision's chart.
	ChartName    string `json:"chartName"`
	ChartVersion string `json:"chartVersion"`
	// Status is Helm's status of the revision: deployed, superseded, failed, …
	Status string `json:"status"`
	// Description is Helm's description of the revision ("Upgrade complete", "Rollback to 2").
	Description string `json:"description,omitempty"`
}

// HelmReleaseList is a list of HelmReleases.
type HelmReleaseList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []HelmRelease `json:"items"`
}
