package reconcile

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/fluxcd/pkg/apis/meta"
	"github.com/fluxcd/pkg/runtime/conditions"
	sourcev1 "github.com/fluxcd/source-controller/api/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferry-gitops/ferry/api"
)

// The source kinds: GitRepository, OCIRepository, HelmRepository and HelmChart. sync does not
// fetch them; it resolves each to the item of the current bundle carried from its upstream
// (resolve.go) and reports that item as the source's artifact, with Flux's revision strings, so
// Kustomizations, HelmReleases, the flux CLI and kubectl wait read them as they read Flux's.

// ArtifactURLScheme prefixes a source artifact's url: the artifact is in sync's cache, read
// from there, not over HTTP (docs/flux.md, "Sources").
const ArtifactURLScheme = "ferry+cache://"

// sourceKind returns the kind of a Flux source of type T.
func sourceKind[T client.Object, L client.ObjectList](name, label string, wrap func(T) subject, zero func() T, newList func() L, items func(L) []T) *kind {
	return &kind{
		name: name, label: label, source: true,
		new: func() subject { return wrap(zero()) },
		list: func(ctx context.Context, c client.Reader) ([]subject, error) {
			l := newList()
			if err := c.List(ctx, l); err != nil {
				return nil, err
			}
			var out []subject
			for _, o := range items(l) {
				out = append(out, wrap(o))
			}
			return out, nil
		},
	}
}

var gitRepositoryKind = sourceKind(sourcev1.GitRepositoryKind, "gitrepository",
	func(o *sourcev1.GitRepository) subject { return gitRepository{o} },
	func() *sourcev1.GitRepository { return &sourcev1.GitRepository{} },
	func() *sourcev1.GitRepositoryList { return &sourcev1.GitRepositoryList{} },
	func(l *sourcev1.GitRepositoryList) []*sourcev1.GitRepository { return ptrs(l.Items) })

var ociRepositoryKind = sourceKind(sourcev1.OCIRepositoryKind, "ocirepository",
	func(o *sourcev1.OCIRepository) subject { return ociRepository{o} },
	func() *sourcev1.OCIRepository { return &sourcev1.OCIRepository{} },
	func() *sourcev1.OCIRepositoryList { return &sourcev1.OCIRepositoryList{} },
	func(l *sourcev1.OCIRepositoryList) []*sourcev1.OCIRepository { return ptrs(l.Items) })

var helmRepositoryKind = sourceKind(sourcev1.HelmRepositoryKind, "helmrepository",
	func(o *sourcev1.HelmRepository) subject { return helmRepository{o} },
	func() *sourcev1.HelmRepository { return &sourcev1.HelmRepository{} },
	func() *sourcev1.HelmRepositoryList { return &sourcev1.HelmRepositoryList{} },
	func(l *sourcev1.HelmRepositoryList) []*sourcev1.HelmRepository { return ptrs(l.Items) })

var helmChartKind = sourceKind(sourcev1.HelmChartKind, "helmchart",
	func(o *sourcev1.HelmChart) subject { return helmChart{o} },
	func() *sourcev1.HelmChart { return &sourcev1.HelmChart{} },
	func() *sourcev1.HelmChartList { return &sourcev1.HelmChartList{} },
	func(l *sourcev1.HelmChartList) []*sourcev1.HelmChart { return ptrs(l.Items) })

func ptrs[T any](items []T) []*T {
	out := make([]*T, len(items))
	for i := range items {
		out[i] = &items[i]
	}
	return out
}

type gitRepository struct{ *sourcev1.GitRepository }
type ociRepository struct{ *sourcev1.OCIRepository }
type helmRepository struct{ *sourcev1.HelmRepository }
type helmChart struct{ *sourcev1.HelmChart }

func (g gitRepository) api() conditions.Setter  { return g.GitRepository }
func (g gitRepository) kind() *kind             { return gitRepositoryKind }
func (o ociRepository) api() conditions.Setter  { return o.OCIRepository }
func (o ociRepository) kind() *kind             { return ociRepositoryKind }
func (h helmRepository) api() conditions.Setter { return h.HelmRepository }
func (h helmRepository) kind() *kind            { return helmRepositoryKind }
func (h helmChart) api() conditions.Setter      { return h.HelmChart }
func (h helmChart) kind() *kind                 { return helmChartKind }

// sourceFields are the fields every source kind has.
func sourceFields(suspend bool, interval metav1.Duration, timeout *metav1.Duration, gen *int64, artifact **meta.Artifact, req *meta.ReconcileRequestStatus) fields {
	return fields{
		suspend: suspend, interval: interval.Duration, timeout: timeout,
		observedGeneration:     gen,
		appliedRevision:        func() string { return artifactRevision(*artifact) },
		lastHandledReconcileAt: &req.LastHandledReconcileAt,
	}
}

func artifactRevision(a *meta.Artifact) string {
	if a == nil {
		return ""
	}
	return a.Revision
}

func (g gitRepository) fields() fields {
	s := &g.Status
	return sourceFields(g.Spec.Suspend, g.Spec.Interval, g.Spec.Timeout, &s.ObservedGeneration, &s.Artifact, &s.ReconcileRequestStatus)
}

func (o ociRepository) fields() fields {
	s := &o.Status
	return sourceFields(o.Spec.Suspend, o.Spec.Interval, o.Spec.Timeout, &s.ObservedGeneration, &s.Artifact, &s.ReconcileRequestStatus)
}

func (h helmRepository) fields() fields {
	s := &h.Status
	return sourceFields(h.Spec.Suspend, h.Spec.Interval, h.Spec.Timeout, &s.ObservedGeneration, &s.Artifact, &s.ReconcileRequestStatus)
}

func (h helmChart) fields() fields {
	s := &h.Status
	return sourceFields(h.Spec.Suspend, h.Spec.Interval, nil, &s.ObservedGeneration, &s.Artifact, &s.ReconcileRequestStatus)
}

// sourceRevision of a source is the revision it resolves to now.
func sourceRevisionOf(ctx context.Context, r *Reconciler, p *pass, o subject) (string, bool) {
	key := keyOf(o)
	res, err := p.resolveRef(ctx, r, key.Kind, key.Namespace, key.Name)
	if err != nil {
		return "", false
	}
	return res.revision, true
}

func (g gitRepository) sourceRevision(ctx context.Context, r *Reconciler, p *pass) (string, bool) {
	return sourceRevisionOf(ctx, r, p, g)
}
func (o ociRepository) sourceRevision(ctx context.Context, r *Reconciler, p *pass) (string, bool) {
	return sourceRevisionOf(ctx, r, p, o)
}
func (h helmRepository) sourceRevision(ctx context.Context, r *Reconciler, p *pass) (string, bool) {
	return sourceRevisionOf(ctx, r, p, h)
}
func (h helmChart) sourceRevision(ctx context.Context, r *Reconciler, p *pass) (string, bool) {
	return sourceRevisionOf(ctx, r, p, h)
}

// reconcileSource resolves a source and writes its artifact; notes lists what sync accepts
// but does not do (fields that need the network), said in the Ready message.
func reconcileSource(ctx context.Context, r *Reconciler, a attempt, o subject, artifact **meta.Artifact, notes []string) outcome {
	key := keyOf(o)
	res, err := a.pass.resolveRef(ctx, r, key.Kind, key.Namespace, key.Name)
	if err != nil {
		return outcome{reason: sourceReason(err), message: err.Error()}
	}
	prev := *artifact
	now := metav1.Now()
	if prev != nil && prev.Revision == res.revision {
		now = prev.LastUpdateTime
	}
	size := res.size
	itemName := ""
	if res.item != nil {
		itemName = res.item.Name
	}
	*artifact = &meta.Artifact{
		Path:           fmt.Sprintf("%s/%s/%s/%s", strings.ToLower(key.Kind), key.Namespace, key.Name, strings.TrimPrefix(res.digest, "sha256:")),
		URL:            ArtifactURLScheme + itemName + "@" + res.digest,
		Revision:       res.revision,
		Digest:         res.digest,
		LastUpdateTime: now,
	}
	if size > 0 {
		(*artifact).Size = &size
	}
	msg := fmt.Sprintf("stored artifact for revision '%s'", res.revision)
	if itemName != "" {
		msg += fmt.Sprintf(" (bundle item %s)", itemName)
	}
	if len(res.charts) > 0 {
		msg += fmt.Sprintf(" (%d charts carried: %s)", len(res.charts), strings.Join(res.charts, ", "))
	}
	if len(notes) > 0 {
		msg += "; " + strings.Join(notes, "; ")
	}
	return outcome{ready: true, reason: meta.SucceededReason, message: msg}
}

// offlineNotes says which of a source's network fields sync accepts and leaves alone.
func offlineNotes(secretRef, proxySecretRef *meta.LocalObjectReference, verify bool) []string {
	var out []string
	if secretRef != nil {
		out = append(out, fmt.Sprintf("secretRef %s is not used: the source is read from the signed bundle, which mirror fetched with its own credentials", secretRef.Name))
	}
	if proxySecretRef != nil {
		out = append(out, fmt.Sprintf("proxySecretRef %s is not used: sync makes no connection upstream", proxySecretRef.Name))
	}
	if verify {
		out = append(out, "verify is not run here: the bundle's signature, checked on import against sync's pinned keys, covers this artifact")
	}
	return out
}

func (g gitRepository) reconcile(ctx context.Context, r *Reconciler, a attempt) outcome {
	notes := offlineNotes(g.Spec.SecretRef, g.Spec.ProxySecretRef, g.Spec.Verification != nil)
	notes = append(notes, treeNotes(map[string]bool{
		"ignore": g.Spec.Ignore != nil, "include": len(g.Spec.Include) > 0,
		"sparseCheckout": len(g.Spec.SparseCheckout) > 0, "recurseSubmodules": g.Spec.RecurseSubmodules,
	})...)
	return reconcileSource(ctx, r, a, g, &g.Status.Artifact, notes)
}

// treeNotes says which of the fields that shape a source's tree are set and not applied: the
// artifact is the tree mirror packed (ferry.yaml git[].paths chooses its folders).
func treeNotes(set map[string]bool) []string {
	var names []string
	for name, ok := range set {
		if ok {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return nil
	}
	sort.Strings(names)
	return []string{fmt.Sprintf("%s not applied: the artifact is the tree as mirror packed it (choose its folders with ferry.yaml git[].paths)", strings.Join(names, ", "))}
}

func (o ociRepository) reconcile(ctx context.Context, r *Reconciler, a attempt) outcome {
	notes := offlineNotes(o.Spec.SecretRef, o.Spec.ProxySecretRef, o.Spec.Verify != nil)
	notes = append(notes, treeNotes(map[string]bool{"ignore": o.Spec.Ignore != nil})...)
	if o.Spec.LayerSelector != nil {
		notes = append(notes, "layerSelector is not applied: a chart is read whole, and a tree from the artifact's Flux content layer")
	}
	out := reconcileSource(ctx, r, a, o, &o.Status.Artifact, notes)
	o.Status.URL = o.Spec.URL
	return out
}

func (h helmRepository) reconcile(ctx context.Context, r *Reconciler, a attempt) outcome {
	out := reconcileSource(ctx, r, a, h, &h.Status.Artifact, offlineNotes(h.Spec.SecretRef, nil, false))
	h.Status.URL = h.Spec.URL
	return out
}

func (h helmChart) reconcile(ctx context.Context, r *Reconciler, a attempt) outcome {
	out := reconcileSource(ctx, r, a, h, &h.Status.Artifact, offlineNotes(nil, nil, h.Spec.Verify != nil))
	if out.ready {
		h.Status.ObservedChartName = h.Spec.Chart
	}
	return out
}

// finalize of a source: nothing to delete, the artifact is the cache's.
func finalizeSource() cleanup {
	return cleanup{reason: api.FinalizedReason, note: "source removed; its items stay in the cache until the bundle that carries them is collected"}
}

func (g gitRepository) finalize(context.Context, *Reconciler, attempt) cleanup {
	return finalizeSource()
}
func (o ociRepository) finalize(context.Context, *Reconciler, attempt) cleanup {
	return finalizeSource()
}
func (h helmRepository) finalize(context.Context, *Reconciler, attempt) cleanup {
	return finalizeSource()
}
func (h helmChart) finalize(context.Context, *Reconciler, attempt) cleanup { return finalizeSource() }
