package reconcile

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	kustomizev1 "github.com/fluxcd/kustomize-controller/api/v1"
	"github.com/fluxcd/pkg/apis/meta"
	"github.com/fluxcd/pkg/runtime/conditions"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
)

// objKey names a Kustomization or a HelmRelease.
type objKey struct {
	Kind string
	types.NamespacedName
}

// sortKey orders keys by namespace/name, then kind.
func (k objKey) sortKey() string { return k.NamespacedName.String() + "\x00" + k.Kind }

// label writes k as "ns/name", prefixed with its kind when the kind is not self's.
func (k objKey) label(selfKind string) string {
	if k.Kind == selfKind {
		return k.NamespacedName.String()
	}
	return k.Kind + " " + k.NamespacedName.String()
}

// dependencyKeys names a dependsOn list's objects: of kind kind (Flux's dependsOn names objects
// of the dependent's own kind), in namespace ns unless they name theirs.
func dependencyKeys(kind, ns string, refs []types.NamespacedName) []objKey {
	var out []objKey
	for _, d := range refs {
		k := objKey{Kind: kind, NamespacedName: d}
		if k.Namespace == "" {
			k.Namespace = ns
		}
		out = append(out, k)
	}
	return out
}

func (r *Reconciler) dependenciesReady(ctx context.Context, p *pass, o subject) string {
	for _, d := range dependenciesOf(o) {
		if msg := r.dependencyReady(ctx, p, d, o.kind().name); msg != "" {
			return msg
		}
	}
	return ""
}

// dependencyReady returns "" when the object d (of any kind) is Ready at its current
// generation and at the current revision of its source (the commit of its Git item, or the
// version of its chart item), and otherwise says why not. selfKind is the dependent's kind:
// d is named with its kind when that differs.
func (r *Reconciler) dependencyReady(ctx context.Context, p *pass, d objKey, selfKind string) string {
	label := d.label(selfKind)
	dep, ok := p.objects[d]
	if !ok {
		k := kindNamed(d.Kind)
		if k == nil {
			return fmt.Sprintf("dependency %s: kind %q is not supported", label, d.Kind)
		}
		dep = k.new()
		if err := r.client.Get(ctx, d.NamespacedName, dep.api()); err != nil {
			if apierrors.IsNotFound(err) {
				return fmt.Sprintf("dependency %s not found", label)
			}
			return fmt.Sprintf("dependency %s: %v", label, err)
		}
	}
	obj, f := dep.api(), dep.fields()
	if !conditions.IsTrue(obj, meta.ReadyCondition) || *f.observedGeneration != obj.GetGeneration() {
		return fmt.Sprintf("dependency %s is not ready", label)
	}
	if rev, ok := dep.sourceRevision(ctx, r, p); ok && f.appliedRevision() != rev {
		return fmt.Sprintf("dependency %s is at revision %q, not yet at %s", label, f.appliedRevision(), rev)
	}
	return ""
}

// plan orders Kustomizations so that each comes after its dependencies, and finds the cycles.
// Kustomizations that depend on nothing among themselves keep namespace/name order. cycles maps
// each member of a cycle to the cycle, written "ns/a -> ns/b -> ns/a".
func plan(ks []*kustomizev1.Kustomization) (order []*kustomizev1.Kustomization, cycles map[types.NamespacedName]string) {
	byKey := map[objKey]*kustomizev1.Kustomization{}
	deps := map[objKey][]objKey{}
	for _, k := range ks {
		key := keyOf(kustomization{k})
		byKey[key] = k
		deps[key] = dependenciesOf(kustomization{k})
	}
	keys, c := planGraph(deps)
	for _, key := range keys {
		order = append(order, byKey[key])
	}
	cycles = map[types.NamespacedName]string{}
	for key, desc := range c {
		cycles[key.NamespacedName] = desc
	}
	return order, cycles
}

// planGraph orders the keys of deps (each key mapped to what it depends on) so that each comes
// after its dependencies, and finds the cycles. Keys that depend on nothing among themselves
// keep namespace/name order; dependencies on keys not in deps are left out. cycles maps each
// member of a cycle to the cycle, written "ns/a -> ns/b -> ns/a" (each member prefixed with its
// kind when the cycle mixes kinds).
func planGraph(deps map[objKey][]objKey) (order []objKey, cycles map[objKey]string) {
	var keys []objKey
	for key := range deps {
		keys = append(keys, key)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].sortKey() < keys[j].sortKey() })
	edges := map[objKey][]objKey{}
	for _, key := range keys {
		for _, d := range deps[key] {
			if _, ok := deps[d]; ok {
				edges[key] = append(edges[key], d)
			}
		}
	}

	// Tarjan's strongly connected components; a component of more than one member, or one
	// member depending on itself, is a cycle. Components come out dependencies first.
	index := map[objKey]int{}
	low := map[objKey]int{}
	onStack := map[objKey]bool{}
	var stack []objKey
	var comps [][]objKey
	next := 0
	var strong func(v objKey)
	strong = func(v objKey) {
		index[v], low[v] = next, next
		next++
		stack = append(stack, v)
		onStack[v] = true
		for _, w := range edges[v] {
			if _, seen := index[w]; !seen {
				strong(w)
				low[v] = min(low[v], low[w])
			} else if onStack[w] {
				low[v] = min(low[v], index[w])
			}
		}
		if low[v] == index[v] {
			var comp []objKey
			for {
				w := stack[len(stack)-1]
				stack = stack[:len(stack)-1]
				onStack[w] = false
				comp = append(comp, w)
				if w == v {
					break
				}
			}
			comps = append(comps, comp)
		}
	}
	for _, key := range keys {
		if _, seen := index[key]; !seen {
			strong(key)
		}
	}

	cycles = map[objKey]string{}
	for _, comp := range comps {
		self := len(comp) == 1 && slices.Contains(edges[comp[0]], comp[0])
		if len(comp) > 1 || self {
			desc := describeCycle(comp, edges)
			for _, m := range comp {
				cycles[m] = desc
			}
		}
		sort.Slice(comp, func(i, j int) bool { return comp[i].sortKey() < comp[j].sortKey() })
		order = append(order, comp...)
	}
	return order, cycles
}

// describeCycle walks a strongly connected component from its first member (by name) along
// edges inside it until a member repeats: "ns/a -> ns/b -> ns/a". When the component mixes
// kinds, each member is prefixed with its kind.
func describeCycle(comp []objKey, edges map[objKey][]objKey) string {
	in := map[objKey]bool{}
	start := comp[0]
	kind := comp[0].Kind
	for _, m := range comp {
		in[m] = true
		if m.sortKey() < start.sortKey() {
			start = m
		}
		if m.Kind != kind {
			kind = ""
		}
	}
	path := []string{start.label(kind)}
	visited := map[objKey]bool{start: true}
	cur := start
	for {
		var nxt objKey
		found := false
		for _, w := range edges[cur] {
			if in[w] && (!visited[w] || w == start) {
				nxt, found = w, true
				if w == start {
					break
				}
			}
		}
		if !found { // every way leads to a member already named: close at the first one
			for _, w := range edges[cur] {
				if in[w] {
					nxt, found = w, true
					break
				}
			}
		}
		if !found {
			break
		}
		path = append(path, nxt.label(kind))
		if visited[nxt] {
			break
		}
		visited[nxt] = true
		cur = nxt
	}
	return strings.Join(path, " -> ")
}

// refNames reads the namespace and name of each reference.
func refNames[T any](refs []T, nn func(T) (ns, name string)) []types.NamespacedName {
	out := make([]types.NamespacedName, len(refs))
	for i, r := range refs {
		out[i].Namespace, out[i].Name = nn(r)
	}
	return out
}
