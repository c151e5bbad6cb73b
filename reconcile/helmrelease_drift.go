package reconcile

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	helmv2 "github.com/fluxcd/helm-controller/api/v2"
	"github.com/fluxcd/pkg/apis/meta"
	"github.com/fluxcd/pkg/ssa"
	ssautils "github.com/fluxcd/pkg/ssa/utils"
	"helm.sh/helm/v4/pkg/kube"
	release "helm.sh/helm/v4/pkg/release/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/ferry-gitops/ferry/api"
)

// Metadata Helm puts on every object of a release when it applies it.
const (
	helmManagedByLabel        = "app.kubernetes.io/managed-by"
	helmManagedByValue        = "Helm"
	helmReleaseNameAnnotation = "meta.helm.sh/release-name"
	helmReleaseNSAnnotation   = "meta.helm.sh/release-namespace"
)

// helmFieldManager returns the field manager Helm's SDK applies with in this process (as
// helm.sh/helm/v4/pkg/kube computes it): kube.ManagedFieldsManager when set, otherwise the
// program's base name. Drift is corrected under the same manager, so that the fields put
// back stay Helm's and a later upgrade that drops them removes them.
func helmFieldManager() string {
	if kube.ManagedFieldsManager != "" {
		return kube.ManagedFieldsManager
	}
	if os.Args[0] == "" {
		return "unknown"
	}
	return filepath.Base(os.Args[0])
}

// driftMode returns h's spec.driftDetection.mode; disabled by default, as in Flux.
func driftMode(h *helmv2.HelmRelease) helmv2.DriftDetectionMode {
	if h.Spec.DriftDetection == nil || h.Spec.DriftDetection.Mode == "" {
		return helmv2.DriftDetectionDisabled
	}
	return h.Spec.DriftDetection.Mode
}

// releaseObjects returns the objects of rel's manifest (hooks are not in it) as Helm applied
// them: namespaced objects without a namespace in rel's namespace, with Helm's ownership
// label and annotations.
func releaseObjects(t *target, rel *release.Release) ([]*unstructured.Unstructured, error) {
	objs, err := ssautils.ReadObjects(strings.NewReader(rel.Manifest))
	if err != nil {
		return nil, fmt.Errorf("read the release manifest: %w", err)
	}
	mapper := t.client.RESTMapper()
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", objectName(o), err)
		}
		if m.Scope.Name() == apimeta.RESTScopeNameNamespace {
			if o.GetNamespace() == "" {
				o.SetNamespace(rel.Namespace)
			}
		} else {
			o.SetNamespace("")
		}
		labels := o.GetLabels()
		if labels == nil {
			labels = map[string]string{}
		}
		labels[helmManagedByLabel] = helmManagedByValue
		o.SetLabels(labels)
		annotations := o.GetAnnotations()
		if annotations == nil {
			annotations = map[string]string{}
		}
		annotations[helmReleaseNameAnnotation] = rel.Name
		annotations[helmReleaseNSAnnotation] = rel.Namespace
		o.SetAnnotations(annotations)
	}
	return objs, nil
}

// checkDrift is the outcome of a HelmRelease whose release is already at the desired chart
// version and values (at says so): unless drift detection is disabled, the objects of the
// release's manifest are compared with the cluster by server-side dry-run apply (field
// manager: Helm's), as h's ServiceAccount when it names one. With mode enabled, objects that
// differ or are missing are applied again, and counted in the outcome's drift; with warn, they
// are reported in the message, a log line and a Warning Event, and left alone.
func (r *Reconciler) checkDrift(ctx context.Context, t *target, h *helmv2.HelmRelease, sa string, rel *release.Release, at string, log *slog.Logger) outcome {
	ok := outcome{ready: true, reason: meta.ReconciliationSucceededReason, message: at}
	mode := driftMode(h)
	if mode == helmv2.DriftDetectionDisabled {
		return ok
	}
	fail := func(err error) outcome {
		return outcome{reason: api.DriftCorrectionFailedReason, message: fmt.Sprintf("%s; drift detection: %v", at, err)}
	}
	objs, err := releaseObjects(t, rel)
	if err != nil {
		return fail(err)
	}
	if len(objs) == 0 {
		return ok
	}
	c, err := clientAs(t, h.Namespace, sa)
	if err != nil {
		return fail(err)
	}
	mgr := ssa.NewResourceManager(c, nil, ssa.Owner{Field: helmFieldManager()})
	var drifted []string
	switch mode {
	case helmv2.DriftDetectionWarn:
		for _, o := range objs {
			e, _, _, err := mgr.Diff(ctx, o, ssa.DefaultDiffOptions())
			if err != nil {
				return fail(err)
			}
			if e.Action == ssa.CreatedAction || e.Action == ssa.ConfiguredAction {
				drifted = append(drifted, driftEntry(*e))
			}
		}
		if len(drifted) == 0 {
			return ok
		}
		note := fmt.Sprintf("drift detected, not corrected (driftDetection mode warn): %s", strings.Join(drifted, ", "))
		log.Warn("drift detected", "objects", drifted)
		r.events.Eventf(h, nil, "Warning", helmv2.DriftDetectedReason, eventAction, "%s", truncate(note, eventNoteLimit))
		ok.message += "; " + note
		return ok
	default:
		opts := ssa.DefaultApplyOptions()
		cs, err := mgr.ApplyAll(ctx, objs, opts)
		if err != nil {
			return fail(err)
		}
		for _, e := range cs.Entries {
			if e.Action == ssa.CreatedAction || e.Action == ssa.ConfiguredAction {
				drifted = append(drifted, driftEntry(e))
			}
		}
		if len(drifted) == 0 {
			return ok
		}
		log.Info("drift corrected", "objects", drifted)
		ok.drift = len(drifted)
		ok.message += "; drift corrected: " + strings.Join(drifted, ", ")
		return ok
	}
}

// driftEntry writes a change set entry as "ConfigMap default/x configured" (a missing object
// was "created").
func driftEntry(e ssa.ChangeSetEntry) string {
	m := e.ObjMetadata
	name := m.Name
	if m.Namespace != "" {
		name = m.Namespace + "/" + m.Name
	}
	return fmt.Sprintf("%s %s %s", m.GroupKind.Kind, name, e.Action)
}
