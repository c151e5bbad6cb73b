package reconcile

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/fluxcd/pkg/apis/meta"
	"github.com/fluxcd/pkg/runtime/conditions"
	sourcev1 "github.com/fluxcd/source-controller/api/v1"
	swv1beta1 "github.com/fluxcd/source-watcher/api/v2/v1beta1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/ferry-gitops/ferry/api"
	"github.com/ferry-gitops/ferry/kbuild"
)

// The ArtifactGenerator kind (source.extensions.fluxcd.io/v1beta1, Flux's source-watcher):
// it composes ExternalArtifacts from the trees of other sources with copy operations. sync
// does what source-watcher does, from the cache: it resolves the generator's sources like any
// other (resolve.go), writes one ExternalArtifact per spec.artifacts[] (server-side apply,
// owned by the generator) with its status (artifact, Ready), and lists them in the
// generator's status.inventory. A Kustomization whose sourceRef is an ExternalArtifact builds
// the tree composed in memory with kbuild.CopyArtifact; no archive is stored or served
// (docs/reconcile.md, "ArtifactGenerator and ExternalArtifact").

var artifactGeneratorKind = sourceKind(swv1beta1.ArtifactGeneratorKind, "artifactgenerator",
	func(o *swv1beta1.ArtifactGenerator) subject { return artifactGenerator{o} },
	func() *swv1beta1.ArtifactGenerator { return &swv1beta1.ArtifactGenerator{} },
	func() *swv1beta1.ArtifactGeneratorList { return &swv1beta1.ArtifactGeneratorList{} },
	func(l *swv1beta1.ArtifactGeneratorList) []*swv1beta1.ArtifactGenerator { return ptrs(l.Items) })

func init() {
	// A cluster without source-watcher's CRD has no ArtifactGenerators: nothing to list.
	list := artifactGeneratorKind.list
	artifactGeneratorKind.list = func(ctx context.Context, c client.Reader) ([]subject, error) {
		out, err := list(ctx, c)
		if apimeta.IsNoMatchError(err) {
			return nil, nil
		}
		return out, err
	}
}

type artifactGenerator struct{ *swv1beta1.ArtifactGenerator }

func (g artifactGenerator) api() conditions.Setter { return g.ArtifactGenerator }
func (g artifactGenerator) kind() *kind            { return artifactGeneratorKind }

// fields of an ArtifactGenerator: it has no suspend, interval or timeout fields (the
// source.extensions.fluxcd.io/reconcile: disabled annotation suspends it, it is reconciled
// hourly as source-watcher requeues it), and no status.observedGeneration: the Ready
// condition's observedGeneration stands for it. Its revision is status.observedSourcesDigest.
func (g artifactGenerator) fields() fields {
	gen := int64(0)
	if c := apimeta.FindStatusCondition(g.Status.Conditions, meta.ReadyCondition); c != nil {
		gen = c.ObservedGeneration
	}
	return fields{
		suspend: g.IsDisabled(), interval: g.GetRequeueAfter(),
		observedGeneration:     &gen,
		appliedRevision:        func() string { return g.Status.ObservedSourcesDigest },
		lastHandledReconcileAt: &g.Status.LastHandledReconcileAt,
	}
}

// sourceRevision of a generator is the digest of its sources' revisions now.
func (g artifactGenerator) sourceRevision(ctx context.Context, r *Reconciler, p *pass) (string, bool) {
	srcs, err := p.generatorSources(ctx, r, g.ArtifactGenerator)
	if err != nil {
		return "", false
	}
	return sourcesDigest(srcs), true
}

// generatorSource is one of a generator's sources, resolved.
type generatorSource struct {
	ref swv1beta1.SourceReference
	res *resolved
}

// generatorSources resolves each of g's sources, by alias; a source of a kind sync does not
// compose from, or that does not resolve, is an error naming it.
func (p *pass) generatorSources(ctx context.Context, r *Reconciler, g *swv1beta1.ArtifactGenerator) (map[string]generatorSource, error) {
	out := map[string]generatorSource{}
	for _, s := range g.Spec.Sources {
		ns := s.Namespace
		if ns == "" {
			ns = g.Namespace
		}
		what := fmt.Sprintf("source %s '%s/%s' (alias %s)", s.Kind, ns, s.Name, s.Alias)
		if _, dup := out[s.Alias]; dup {
			return nil, &sourceError{reason: swv1beta1.ValidationFailedReason, msg: fmt.Sprintf("%s: the alias is used twice", what)}
		}
		if s.Kind != sourcev1.GitRepositoryKind && s.Kind != sourcev1.OCIRepositoryKind {
			return nil, terminalError{&sourceError{reason: api.UnsupportedReason, msg: fmt.Sprintf("%s: sync composes artifacts from GitRepository and OCIRepository sources, not from %s", what, s.Kind)}}
		}
		res, err := p.resolveRef(ctx, r, s.Kind, ns, s.Name)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		if res.tree == nil {
			return nil, &sourceError{reason: meta.ArtifactFailedReason, msg: fmt.Sprintf("%s resolves to item %q, which holds no manifests (a chart?)", what, res.item.Name)}
		}
		out[s.Alias] = generatorSource{ref: s, res: res}
	}
	return out, nil
}

// sourcesDigest is the digest of the sources' identities and revisions, as
// status.observedSourcesDigest: it changes when one of them moves.
func sourcesDigest(srcs map[string]generatorSource) string {
	aliases := make([]string, 0, len(srcs))
	for a := range srcs {
		aliases = append(aliases, a)
	}
	sort.Strings(aliases)
	h := sha256.New()
	for _, a := range aliases {
		s := srcs[a]
		fmt.Fprintf(h, "%s %s %s/%s %s %s\n", a, s.ref.Kind, s.ref.Namespace, s.ref.Name, s.res.revision, s.res.digest)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// artifactRoot is where an artifact is composed in its in-memory file system; each source's
// tree is extracted under generatorRoot/<alias>.
const (
	artifactRoot  = "/artifact"
	generatorRoot = "/generator"
)

// composeArtifact composes the artifact a of generator g from the sources' carried trees:
// its revision (the revision of the source @originRevision or @revision names, else
// latest@<digest>), the digest of the tree (kbuild.TreeDigest) and its files.
func (p *pass) composeArtifact(ctx context.Context, r *Reconciler, g *swv1beta1.ArtifactGenerator, a swv1beta1.OutputArtifact) (*resolved, error) {
	key := objKey{Kind: sourcev1.ExternalArtifactKind, NamespacedName: types.NamespacedName{Namespace: g.Namespace, Name: a.Name}}
	if res, ok := p.lookup(key); ok {
		return res.res, res.err
	}
	res, err := p.compose(ctx, r, g, a)
	p.keep(key, resolution{res, err})
	return res, err
}

func (p *pass) compose(ctx context.Context, r *Reconciler, g *swv1beta1.ArtifactGenerator, a swv1beta1.OutputArtifact) (*resolved, error) {
	what := fmt.Sprintf("ArtifactGenerator '%s/%s' artifact %s", g.Namespace, g.Name, a.Name)
	if g.Spec.PathPattern != "" {
		return nil, terminalError{&sourceError{reason: api.UnsupportedReason, msg: fmt.Sprintf("%s: spec.pathPattern is not supported yet: list the artifacts", what)}}
	}
	srcs, err := p.generatorSources(ctx, r, g)
	if err != nil {
		return nil, err
	}
	fsys := filesys.MakeFsInMemory()
	roots := map[string]string{}
	ops := make([]kbuild.CopyOp, 0, len(a.Copy))
	for _, c := range a.Copy {
		ops = append(ops, kbuild.CopyOp{From: c.From, To: c.To, Exclude: c.Exclude, Strategy: c.Strategy})
		alias, _, err := kbuild.ParseFrom(c.From)
		if err != nil {
			return nil, &sourceError{reason: swv1beta1.ValidationFailedReason, msg: fmt.Sprintf("%s: %v", what, err)}
		}
		s, ok := srcs[alias]
		if !ok {
			return nil, &sourceError{reason: swv1beta1.ValidationFailedReason, msg: fmt.Sprintf("%s: copy from %q: no source with alias %q", what, c.From, alias)}
		}
		if _, done := roots[alias]; done {
			continue
		}
		root := path.Join(generatorRoot, alias)
		if err := s.res.tree.extract(ctx, p.cache, fsys, root); err != nil {
			return nil, fmt.Errorf("%s: extract source %s '%s': %w", what, s.ref.Kind, s.ref.Name, err)
		}
		roots[alias] = root
	}
	if err := kbuild.CopyArtifact(fsys, roots, ops, artifactRoot); err != nil {
		return nil, &sourceError{reason: meta.BuildFailedReason, msg: fmt.Sprintf("%s: %v", what, err)}
	}
	digest, err := kbuild.TreeDigest(fsys, artifactRoot)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	files, err := kbuild.Files(fsys, artifactRoot)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	res := &resolved{revision: "latest@" + digest, digest: digest, composed: files}
	for _, f := range files {
		res.size += int64(len(f))
	}
	for _, ref := range []string{a.Revision, a.OriginRevision} {
		if ref == "" {
			continue
		}
		s, ok := srcs[strings.TrimPrefix(ref, "@")]
		if !strings.HasPrefix(ref, "@") || !ok {
			return nil, &sourceError{reason: swv1beta1.ValidationFailedReason, msg: fmt.Sprintf("%s: revision %q names no source alias", what, ref)}
		}
		res.revision, res.origin = s.res.revision, s.res.revision
		break
	}
	return res, nil
}

// resolveExternalArtifact resolves the ExternalArtifact named by key: the artifact of the
// ArtifactGenerator its spec.sourceRef names, or, before the generator has written it, of the
// generator of its namespace that declares an artifact of that name.
func (p *pass) resolveExternalArtifact(ctx context.Context, r *Reconciler, key objKey) (*resolved, error) {
	var genKey *objKey
	var ea sourcev1.ExternalArtifact
	err := r.client.Get(ctx, key.NamespacedName, &ea)
	switch {
	case err == nil && ea.Spec.SourceRef != nil:
		ref := ea.Spec.SourceRef
		if ref.Kind != swv1beta1.ArtifactGeneratorKind {
			return nil, &sourceError{reason: api.UnsupportedReason, msg: fmt.Sprintf("ExternalArtifact '%s' comes from %s '%s': sync composes ExternalArtifacts of ArtifactGenerators only", key.NamespacedName, ref.Kind, ref.Name)}
		}
		ns := ref.Namespace
		if ns == "" {
			ns = key.Namespace
		}
		genKey = &objKey{Kind: swv1beta1.ArtifactGeneratorKind, NamespacedName: types.NamespacedName{Namespace: ns, Name: ref.Name}}
	case err != nil && !apierrors.IsNotFound(err):
		return nil, fmt.Errorf("ExternalArtifact '%s': %w", key.NamespacedName, err)
	}
	var gen *swv1beta1.ArtifactGenerator
	if genKey == nil {
		var names []string
		for k, o := range p.objects {
			g, ok := o.(artifactGenerator)
			if !ok || k.Namespace != key.Namespace || !g.GetDeletionTimestamp().IsZero() {
				continue
			}
			for _, a := range g.Spec.OutputArtifacts {
				if a.Name == key.Name {
					gen = g.ArtifactGenerator
					names = append(names, g.Name)
				}
			}
		}
		if gen == nil {
			return nil, fmt.Errorf("ExternalArtifact '%s' not found, and no ArtifactGenerator of namespace %s declares an artifact %s", key.NamespacedName, key.Namespace, key.Name)
		}
		if len(names) > 1 {
			sort.Strings(names)
			return nil, &sourceError{reason: swv1beta1.ValidationFailedReason, msg: fmt.Sprintf("ExternalArtifact '%s': ArtifactGenerators %s all declare it", key.NamespacedName, strings.Join(names, ", "))}
		}
	} else {
		o, ok := p.objects[*genKey]
		if !ok {
			g := &swv1beta1.ArtifactGenerator{}
			if err := r.client.Get(ctx, genKey.NamespacedName, g); err != nil {
				if apierrors.IsNotFound(err) {
					return nil, fmt.Errorf("ExternalArtifact '%s': ArtifactGenerator '%s' not found", key.NamespacedName, genKey.NamespacedName)
				}
				return nil, fmt.Errorf("ExternalArtifact '%s': ArtifactGenerator '%s': %w", key.NamespacedName, genKey.NamespacedName, err)
			}
			o = artifactGenerator{g}
		}
		gen = o.(artifactGenerator).ArtifactGenerator
	}
	for _, a := range gen.Spec.OutputArtifacts {
		if a.Name == key.Name && gen.Namespace == key.Namespace {
			return p.composeArtifact(ctx, r, gen, a)
		}
	}
	return nil, fmt.Errorf("ExternalArtifact '%s': ArtifactGenerator '%s/%s' declares no artifact %s", key.NamespacedName, gen.Namespace, gen.Name, key.Name)
}

// reconcile of an ArtifactGenerator: resolve its sources, compose each artifact, write the
// ExternalArtifacts and their status, delete those it no longer declares, and list them in
// status.inventory.
func (g artifactGenerator) reconcile(ctx context.Context, r *Reconciler, a attempt) outcome {
	p := a.pass
	srcs, err := p.generatorSources(ctx, r, g.ArtifactGenerator)
	if err != nil {
		return failure(sourceReason(err), err.Error(), err)
	}
	g.Status.ObservedSourcesDigest = sourcesDigest(srcs)
	seen := map[string]bool{}
	var inv []swv1beta1.ExternalArtifactReference
	var made []string
	for _, art := range g.Spec.OutputArtifacts {
		if seen[art.Name] {
			return outcome{reason: swv1beta1.ValidationFailedReason, message: fmt.Sprintf("artifact %s is declared twice", art.Name)}.terminal()
		}
		seen[art.Name] = true
		res, err := p.composeArtifact(ctx, r, g.ArtifactGenerator, art)
		if err != nil {
			return failure(sourceReason(err), err.Error(), err)
		}
		artifact, err := r.writeExternalArtifact(ctx, g.ArtifactGenerator, art.Name, res)
		if err != nil {
			return outcome{reason: meta.ReconciliationFailedReason, message: fmt.Sprintf("ExternalArtifact %s: %v", art.Name, err)}
		}
		inv = append(inv, swv1beta1.ExternalArtifactReference{Name: art.Name, Namespace: g.Namespace, Digest: artifact.Digest, Filename: path.Base(artifact.Path)})
		made = append(made, fmt.Sprintf("%s (%s)", art.Name, res.revision))
	}
	old := g.Status.Inventory
	g.Status.Inventory = inv
	for _, o := range old {
		if seen[o.Name] && o.Namespace == g.Namespace {
			continue
		}
		if err := r.deleteExternalArtifact(ctx, g.ArtifactGenerator, o); err != nil {
			g.Status.Inventory = append(g.Status.Inventory, o)
			return outcome{reason: meta.ReconciliationFailedReason, message: fmt.Sprintf("delete ExternalArtifact %s/%s, no longer declared: %v", o.Namespace, o.Name, err)}
		}
		a.log.Info("deleted ExternalArtifact no longer declared", "externalartifact", o.Namespace+"/"+o.Name)
	}
	return outcome{ready: true, reason: meta.SucceededReason, message: fmt.Sprintf("reconciled %d artifacts: %s", len(inv), strings.Join(made, ", "))}
}

// writeExternalArtifact applies the ExternalArtifact name of generator g (spec and owner,
// server-side) and then its status: the artifact res and Ready=True.
func (r *Reconciler) writeExternalArtifact(ctx context.Context, g *swv1beta1.ArtifactGenerator, name string, res *resolved) (*meta.Artifact, error) {
	key := types.NamespacedName{Namespace: g.Namespace, Name: name}
	var prev sourcev1.ExternalArtifact
	if err := r.client.Get(ctx, key, &prev); err != nil && !apierrors.IsNotFound(err) {
		return nil, err
	} else if err == nil && !ownedBy(&prev, g) {
		return nil, fmt.Errorf("exists and is not owned by ArtifactGenerator %s", g.Name)
	}
	gvk := sourcev1.GroupVersion.WithKind(sourcev1.ExternalArtifactKind)
	obj := &unstructured.Unstructured{}
	obj.SetGroupVersionKind(gvk)
	obj.SetName(name)
	obj.SetNamespace(g.Namespace)
	labels := map[string]string{swv1beta1.ArtifactGeneratorLabel: string(g.UID)}
	var annotations map[string]string
	if cm := g.Spec.CommonMetadata; cm != nil {
		for k, v := range cm.Labels {
			labels[k] = v
		}
		annotations = cm.Annotations
	}
	obj.SetLabels(labels)
	obj.SetAnnotations(annotations)
	obj.SetOwnerReferences([]metav1.OwnerReference{{
		APIVersion: swv1beta1.GroupVersion.String(), Kind: swv1beta1.ArtifactGeneratorKind,
		Name: g.Name, UID: g.UID, Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
	}})
	if err := unstructured.SetNestedMap(obj.Object, map[string]any{
		"apiVersion": swv1beta1.GroupVersion.String(), "kind": swv1beta1.ArtifactGeneratorKind,
		"name": g.Name, "namespace": g.Namespace,
	}, "spec", "sourceRef"); err != nil {
		return nil, err
	}
	if err := r.client.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj), client.ForceOwnership, client.FieldOwner(FieldManager)); err != nil {
		return nil, fmt.Errorf("apply: %w", err)
	}
	var cur sourcev1.ExternalArtifact
	if err := r.client.Get(ctx, key, &cur); err != nil {
		return nil, err
	}

	now := metav1.Now()
	if pa := prev.Status.Artifact; pa != nil && pa.Revision == res.revision && pa.Digest == res.digest {
		now = pa.LastUpdateTime
	}
	hexDigest := strings.TrimPrefix(res.digest, "sha256:")
	artifact := &meta.Artifact{
		Path:           fmt.Sprintf("externalartifact/%s/%s/%s.tar.gz", g.Namespace, name, hexDigest),
		URL:            fmt.Sprintf("%sartifactgenerator/%s/%s/%s@%s", ArtifactURLScheme, g.Namespace, g.Name, name, res.digest),
		Revision:       res.revision,
		Digest:         res.digest,
		LastUpdateTime: now,
		Size:           ptr.To(res.size),
	}
	if res.origin != "" {
		artifact.Metadata = map[string]string{swv1beta1.ArtifactOriginRevisionAnnotation: res.origin}
	}
	cur.Status.Artifact = artifact
	conditions.MarkTrue(&cur, meta.ReadyCondition, meta.SucceededReason, "stored artifact for revision '%s' (composed by ArtifactGenerator %s from the bundle's sources)", res.revision, g.Name)
	conditions.Delete(&cur, meta.ReconcilingCondition)
	conditions.Delete(&cur, meta.StalledCondition)
	status, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&cur.Status)
	if err != nil {
		return nil, err
	}
	st := &unstructured.Unstructured{Object: map[string]any{"status": status}}
	st.SetGroupVersionKind(gvk)
	st.SetName(name)
	st.SetNamespace(g.Namespace)
	if err := r.client.Status().Apply(ctx, client.ApplyConfigurationFromUnstructured(st), client.ForceOwnership, client.FieldOwner(FieldManager)); err != nil {
		return nil, fmt.Errorf("apply status: %w", err)
	}
	return artifact, nil
}

// ownedBy says whether o's controller is the generator g.
func ownedBy(o metav1.Object, g *swv1beta1.ArtifactGenerator) bool {
	c := metav1.GetControllerOf(o)
	return c != nil && c.Kind == swv1beta1.ArtifactGeneratorKind && c.UID == g.UID
}

// deleteExternalArtifact deletes the ExternalArtifact ref of g's inventory, when g owns it.
func (r *Reconciler) deleteExternalArtifact(ctx context.Context, g *swv1beta1.ArtifactGenerator, ref swv1beta1.ExternalArtifactReference) error {
	var ea sourcev1.ExternalArtifact
	err := r.client.Get(ctx, types.NamespacedName{Namespace: ref.Namespace, Name: ref.Name}, &ea)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if !ownedBy(&ea, g) {
		return nil
	}
	if err := r.client.Delete(ctx, &ea); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	return nil
}

// finalize of a generator deletes the ExternalArtifacts of its inventory, as source-watcher
// does.
func (g artifactGenerator) finalize(ctx context.Context, r *Reconciler, a attempt) cleanup {
	for _, ref := range g.Status.Inventory {
		if err := r.deleteExternalArtifact(ctx, g.ArtifactGenerator, ref); err != nil {
			return cleanup{failed: true, reason: meta.ReconciliationFailedReason, note: fmt.Sprintf("delete ExternalArtifact %s/%s: %v", ref.Namespace, ref.Name, err)}
		}
	}
	return cleanup{reason: api.FinalizedReason, note: fmt.Sprintf("deleted the %d ExternalArtifacts of the inventory; the sources' items stay in the cache until the bundle that carries them is collected", len(g.Status.Inventory))}
}

// writeTree writes the tree of a source of manifests into fsys under root: the carried item's
// layer, or the files an ArtifactGenerator composed.
func (res *resolved) writeTree(ctx context.Context, p *pass, fsys filesys.FileSystem, root string) error {
	if res.tree != nil {
		return res.tree.extract(ctx, p.cache, fsys, root)
	}
	names := make([]string, 0, len(res.composed))
	for n := range res.composed {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		f := path.Join(root, n)
		if err := fsys.MkdirAll(path.Dir(f)); err != nil {
			return err
		}
		if err := fsys.WriteFile(f, res.composed[n]); err != nil {
			return err
		}
	}
	return fsys.MkdirAll(root)
}

// hasTree says whether res is a source of manifests.
func (res *resolved) hasTree() bool { return res.tree != nil || res.composed != nil }
