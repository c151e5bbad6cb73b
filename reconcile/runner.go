package reconcile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/fluxcd/pkg/apis/meta"
	"github.com/fluxcd/pkg/runtime/conditions"
	"github.com/fluxcd/pkg/runtime/patch"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	kerrors "k8s.io/apimachinery/pkg/util/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferry-gitops/ferry/api"
)

// The runner: what reconciling any kind of object has in common (docs/design/reconcile-runner.md).
// A kind's file (kustomization.go, helmrelease.go) wraps its API type in a subject; the runner
// finalizes a deleted object, skips a suspended one, adds the finalizer, resolves the timeout,
// marks it Reconciling, hands it to the kind, and ends with one deferred status patch of the
// outcome (Ready, Reconciling or Stalled, observedGeneration, lastHandledReconcileAt), an
// Event, a log line and a Result. It never names a Go type of the API.

// subject is one object the runner reconciles, whatever its Go type: a kind's wrapper of its
// API type (kustomization, helmRelease).
type subject interface {
	// api returns the API object: what is patched and evented, and whose conditions are set
	// through fluxcd/pkg/runtime/conditions.
	api() conditions.Setter
	// kind returns the object's kind.
	kind() *kind
	// fields returns the spec and status fields every kind has.
	fields() fields
	// sourceRevision returns the revision of the object's source in pass p (a Git item's
	// commit, a chart item's version), and false when p has none for it.
	sourceRevision(ctx context.Context, r *Reconciler, p *pass) (string, bool)
	// reconcile does one reconciliation and sets the kind's own status fields; the runner
	// writes the outcome as conditions.
	reconcile(ctx context.Context, r *Reconciler, a attempt) outcome
	// finalize cleans up after the deleted object (prunes its inventory, uninstalls its
	// release, as its spec says); the runner then removes the finalizer, or keeps it when the
	// cleanup failed.
	finalize(ctx context.Context, r *Reconciler, a attempt) cleanup
}

// kind is one kind of object the runner reconciles.
type kind struct {
	// name is the API kind (ferryv1.KustomizationKind); label names it in messages and logs
	// ("kustomization").
	name, label string
	// new returns an empty object of the kind, to be read into.
	new func() subject
	// list returns every object of the kind in the cluster.
	list func(ctx context.Context, c client.Reader) ([]subject, error)
	// source marks the source kinds, which a pass reconciles before the others.
	source bool
}

// kinds are the kinds the runner reconciles, in the order a pass lists them.
var kinds = []*kind{gitRepositoryKind, ociRepositoryKind, helmRepositoryKind, helmChartKind, artifactGeneratorKind, kustomizationKind, helmReleaseKind}

// kindNamed returns the kind named name, or nil.
func kindNamed(name string) *kind {
	for _, k := range kinds {
		if k.name == name {
			return k
		}
	}
	return nil
}

// fields are the spec and status fields every kind has; the status fields are pointers into
// the object, so the runner sets them.
type fields struct {
	suspend  bool
	interval time.Duration
	timeout  *metav1.Duration
	// dependsOn are the objects (of the same kind, as in Flux) that must be Ready first.
	dependsOn []objKey

	observedGeneration *int64
	// appliedRevision reads the revision last applied successfully (a source: its artifact's).
	appliedRevision        func() string
	lastHandledReconcileAt *string
}

// timeoutOf is what bounds a reconciliation: spec.timeout, else spec.interval, else
// defaultTimeout.
func timeoutOf(timeout *metav1.Duration, interval time.Duration) time.Duration {
	if timeout != nil && timeout.Duration > 0 {
		return timeout.Duration
	}
	if interval > 0 {
		return interval
	}
	return defaultTimeout
}

// keyOf names o.
func keyOf(o subject) objKey {
	obj := o.api()
	return objKey{Kind: o.kind().name, NamespacedName: types.NamespacedName{Namespace: obj.GetNamespace(), Name: obj.GetName()}}
}

// dependenciesOf returns the keys of o's dependsOn.
func dependenciesOf(o subject) []objKey {
	return o.fields().dependsOn
}

// attempt is what the runner hands a kind for one reconciliation or finalization.
type attempt struct {
	pass *pass
	log  *slog.Logger
	// timeout is timeoutOf the object's spec; the kind bounds with it what the spec says it
	// bounds.
	timeout time.Duration
}

// outcome is the Ready condition a reconciliation ends with.
type outcome struct {
	ready   bool
	reason  string
	message string
	// stalled, when set, is the reason of a Stalled=True condition: the failure is terminal,
	// passes will fail the same way until the spec or the source changes.
	stalled string
	// event, when set, is the note of the success Event in place of message.
	event string
	// drift counts objects put back although their desired state was unchanged.
	drift int
}

// terminal marks out as Stalled with its own reason.
func (out outcome) terminal() outcome {
	out.stalled = out.reason
	return out
}

// failure is a failed outcome with reason and message, Stalled when err is a terminalError.
func failure(reason, message string, err error) outcome {
	out := outcome{reason: reason, message: message}
	var t terminalError
	if errors.As(err, &t) {
		return out.terminal()
	}
	return out
}

// terminalError marks an error that passes will meet again until the spec changes (a kind
// that is not supported, say): the outcome it fails is Stalled.
type terminalError struct{ error }

func (e terminalError) Unwrap() error { return e.error }

// cleanup is what finalizing a deleted object did.
type cleanup struct {
	// failed keeps the finalizer: Ready=False with reason and note, and the next pass tries
	// again.
	failed bool
	// warning makes the Event a Warning (the finalizer is removed, but something was left
	// behind that should not have been).
	warning      bool
	reason, note string
}

// ownedConditions are the condition types the runner writes; the status patch resolves
// conflicts on them in its favour.
var ownedConditions = []string{meta.ReadyCondition, meta.ReconcilingCondition, meta.StalledCondition}

// progressMessage is the Reconciling condition's message while a reconciliation runs.
const progressMessage = "Reconciliation in progress"

// runObject reconciles o: finalizes it when deleted, skips it when suspended, adds the
// finalizer, marks it Reconciling, runs its kind, and writes the outcome in one deferred
// status patch, with an Event, a log line and a Result.
func (r *Reconciler) runObject(ctx context.Context, p *pass, o subject) (err error) {
	obj, f, key := o.api(), o.fields(), keyOf(o)
	label := o.kind().label
	name := obj.GetNamespace() + "/" + obj.GetName()
	log := r.log.With(label, name)
	a := attempt{pass: p, log: log, timeout: timeoutOf(f.timeout, f.interval)}
	if !obj.GetDeletionTimestamp().IsZero() {
		return r.finalizeObject(ctx, o, a)
	}
	if f.suspend {
		log.Info("suspended, skipped")
		return nil
	}
	if err := r.addFinalizer(ctx, obj); err != nil {
		return fmt.Errorf("%s %s: add finalizer: %w", label, name, err)
	}
	defer r.ran(p, key)

	patcher := patch.NewSerialPatcher(obj, r.client)
	conditions.MarkReconciling(obj, meta.ProgressingReason, "%s", progressMessage)
	if err := patcher.Patch(ctx, obj, patch.WithOwnedConditions{Conditions: ownedConditions}); err != nil {
		return fmt.Errorf("%s %s: write status: %w", label, name, err)
	}

	start := time.Now()
	var out outcome
	// The one status patch of the outcome, as kustomize-controller's finalizeStatus.
	defer func() {
		r.report(key.Kind, obj, f.appliedRevision(), start, out)
		*f.observedGeneration = obj.GetGeneration()
		if v, ok := requestedAt(obj); ok {
			*f.lastHandledReconcileAt = v
		}
		setConditions(obj, out)
		r.recordEvent(obj, out)
		if perr := patcher.Patch(ctx, obj, patch.WithOwnedConditions{Conditions: ownedConditions}); perr != nil {
			err = fmt.Errorf("%s %s: write status: %w", label, name, perr)
			return
		}
		if out.ready {
			log.Info("applied", "revision", f.appliedRevision())
			return
		}
		log.Warn("not ready", "reason", out.reason, "message", out.message)
		err = fmt.Errorf("%s %s: %s: %s", label, name, out.reason, out.message)
	}()
	if c, ok := p.cycles[key]; ok {
		out = outcome{reason: api.DependencyCycleReason, message: "dependency cycle: " + c}.terminal()
		return nil
	}
	out = o.reconcile(ctx, r, a)
	return nil
}

// setConditions writes out as obj's conditions, the way Flux's controllers end a
// reconciliation (kstatus): Ready=True, and neither Reconciling nor Stalled, on success;
// Ready=False and Stalled=True on a terminal failure; Ready=False and Reconciling=True
// (ProgressingWithRetry) on a failure the next pass retries.
func setConditions(obj conditions.Setter, out outcome) {
	msg := truncate(out.message, 32000)
	switch {
	case out.ready:
		conditions.MarkTrue(obj, meta.ReadyCondition, out.reason, "%s", msg)
		conditions.Delete(obj, meta.ReconcilingCondition)
		conditions.Delete(obj, meta.StalledCondition)
	case out.stalled != "":
		conditions.MarkFalse(obj, meta.ReadyCondition, out.reason, "%s", msg)
		conditions.MarkStalled(obj, out.stalled, "%s", msg)
	default:
		conditions.MarkFalse(obj, meta.ReadyCondition, out.reason, "%s", msg)
		conditions.Delete(obj, meta.StalledCondition)
		conditions.MarkReconciling(obj, meta.ProgressingWithRetryReason, "%s", progressMessage)
	}
}

// report passes one reconciliation's outcome to Options.OnResult.
func (r *Reconciler) report(kind string, obj client.Object, revision string, start time.Time, out outcome) {
	if r.onResult == nil {
		return
	}
	r.onResult(Result{
		Kind: kind, Namespace: obj.GetNamespace(), Name: obj.GetName(),
		Duration: time.Since(start),
		Ready:    out.ready, Reason: out.reason, Message: out.message,
		Revision:       revision,
		DriftCorrected: out.drift,
	})
}

// refData is the data of a ConfigMap or Secret a spec refers to.
type refData struct {
	// data is a ConfigMap's data or a Secret's; binary is a ConfigMap's binaryData.
	data, binary map[string][]byte
}

// errRefKind is the error of a reference to a kind other than ConfigMap or Secret.
var errRefKind = errors.New("kind must be ConfigMap or Secret")

// lookupRef reads the ConfigMap or Secret ns/name that a spec refers to (postBuild.substituteFrom,
// valuesFrom) through c (readerAs: as the object's ServiceAccount). found is false when it
// does not exist and optional is set; any other kind is errRefKind.
func lookupRef(ctx context.Context, c client.Reader, ns, kind, name string, optional bool) (d refData, found bool, err error) {
	key := types.NamespacedName{Namespace: ns, Name: name}
	switch kind {
	case "ConfigMap":
		var cm corev1.ConfigMap
		if err = c.Get(ctx, key, &cm); err == nil {
			d.data = make(map[string][]byte, len(cm.Data))
			for k, v := range cm.Data {
				d.data[k] = []byte(v)
			}
			d.binary = cm.BinaryData
		}
	case "Secret":
		var s corev1.Secret
		if err = c.Get(ctx, key, &s); err == nil {
			d.data = s.Data
		}
	default:
		return refData{}, false, errRefKind
	}
	if apierrors.IsNotFound(err) && optional {
		return refData{}, false, nil
	}
	if err != nil {
		return refData{}, false, err
	}
	return d, true, nil
}

// isNotFound is apierrors.IsNotFound, also through the aggregate the patch helper returns.
func isNotFound(err error) bool {
	var agg kerrors.Aggregate
	if errors.As(err, &agg) {
		for _, e := range agg.Errors() {
			if isNotFound(e) {
				return true
			}
		}
		return false
	}
	return apierrors.IsNotFound(err)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
