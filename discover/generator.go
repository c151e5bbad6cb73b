package discover

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/ferry-gitops/ferry/kbuild"
)

// ArtifactGeneratorKind is the kind (source.extensions.fluxcd.io) that composes
// ExternalArtifacts from other sources.
const ArtifactGeneratorKind = "ArtifactGenerator"

// externalArtifact builds the tree of the ExternalArtifact named name in ns, which an
// ArtifactGenerator there produces, into fsys at kbuild.SourceRoot. It reports false while
// the generator or one of its sources is not known yet.
func (w *walker) externalArtifact(ctx context.Context, ns, name, needer string, fsys filesys.FileSystem) (bool, error) {
	var gen *unstructured.Unstructured
	var art map[string]any
	for k, u := range w.sources {
		if k.kind != ArtifactGeneratorKind || k.namespace != ns {
			continue
		}
		arts, _, _ := unstructured.NestedSlice(u.Object, "spec", "artifacts")
		for _, a := range arts {
			m, _ := a.(map[string]any)
			if n, _ := m["name"].(string); n == name {
				gen, art = u, m
			}
		}
	}
	if gen == nil {
		return false, nil
	}
	aliases := map[string]*unstructured.Unstructured{}
	srcs, _, _ := unstructured.NestedSlice(gen.Object, "spec", "sources")
	for _, s := range srcs {
		m, _ := s.(map[string]any)
		alias, _ := m["alias"].(string)
		kind, _ := m["kind"].(string)
		sname, _ := m["name"].(string)
		sns, _ := m["namespace"].(string)
		src := w.source(kind, refNS(sns, ns), sname)
		if src == nil {
			return false, nil
		}
		aliases[alias] = src
	}
	what := fmt.Sprintf("ArtifactGenerator %s/%s artifact %s", ns, gen.GetName(), name)
	copies, _, _ := unstructured.NestedSlice(art, "copy")
	var ops []kbuild.CopyOp
	roots := map[string]string{}
	for _, c := range copies {
		m, _ := c.(map[string]any)
		op := kbuild.CopyOp{}
		op.From, _ = m["from"].(string)
		op.To, _ = m["to"].(string)
		op.Strategy, _ = m["strategy"].(string)
		excl, _, _ := unstructured.NestedStringSlice(m, "exclude")
		op.Exclude = excl
		ops = append(ops, op)
		alias, _, err := kbuild.ParseFrom(op.From)
		if err != nil {
			return false, fmt.Errorf("%s: %w", what, err)
		}
		src := aliases[alias]
		if src == nil {
			return false, fmt.Errorf("%s: copy from %q: no source with alias %q", what, op.From, alias)
		}
		if _, ok := roots[alias]; ok {
			continue
		}
		root := "/generator/" + alias
		it, err := w.treeSource(ctx, src, needer+" via "+what)
		if err != nil {
			return false, err
		}
		if it == nil {
			return true, nil
		}
		if err := extractTree(ctx, w.o.Store, *it, fsys, root); err != nil {
			return false, err
		}
		roots[alias] = root
	}
	if err := kbuild.CopyArtifact(fsys, roots, ops, kbuild.SourceRoot); err != nil {
		return false, fmt.Errorf("%s: %w", what, err)
	}
	return true, nil
}
