package reconcile

import (
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/types"

	ferryv1 "github.com/ferry-gitops/ferry/api/v1alpha1"
)

// dependencies returns the keys k depends on (a dependency's namespace defaults to k's).
func dependencies(k *ferryv1.Kustomization) []types.NamespacedName {
	var out []types.NamespacedName
	for _, d := range k.Spec.DependsOn {
		ns := d.Namespace
		if ns == "" {
			ns = k.Namespace
		}
		out = append(out, types.NamespacedName{Namespace: ns, Name: d.Name})
	}
	return out
}

// plan orders Kustomizations so that each comes after its dependencies, and finds the cycles.
// Kustomizations that depend on nothing among themselves keep namespace/name order. cycles maps
// each member of a cycle to the cycle, written "ns/a -> ns/b -> ns/a".
func plan(ks []*ferryv1.Kustomization) (order []*ferryv1.Kustomization, cycles map[types.NamespacedName]string) {
	byKey := map[types.NamespacedName]*ferryv1.Kustomization{}
	var keys []types.NamespacedName
	for _, k := range ks {
		key := types.NamespacedName{Namespace: k.Namespace, Name: k.Name}
		byKey[key] = k
		keys = append(keys, key)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
	edges := map[types.NamespacedName][]types.NamespacedName{}
	for _, key := range keys {
		for _, d := range dependencies(byKey[key]) {
			if _, ok := byKey[d]; ok {
				edges[key] = append(edges[key], d)
			}
		}
	}

	// Tarjan's strongly connected components; a component of more than one member, or one
	// member depending on itself, is a cycle. Components come out dependencies first.
	index := map[types.NamespacedName]int{}
	low := map[types.NamespacedName]int{}
	onStack := map[types.NamespacedName]bool{}
	var stack []types.NamespacedName
	var comps [][]types.NamespacedName
	next := 0
	var strong func(v types.NamespacedName)
	strong = func(v types.NamespacedName) {
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
			var comp []types.NamespacedName
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

	cycles = map[types.NamespacedName]string{}
	for _, comp := range comps {
		self := len(comp) == 1 && contains(edges[comp[0]], comp[0])
		if len(comp) > 1 || self {
			desc := describeCycle(comp, edges)
			for _, m := range comp {
				cycles[m] = desc
			}
		}
		sort.Slice(comp, func(i, j int) bool { return comp[i].String() < comp[j].String() })
		for _, m := range comp {
			order = append(order, byKey[m])
		}
	}
	return order, cycles
}

// describeCycle walks a strongly connected component from its first member (by name) along
// edges inside it until a member repeats: "ns/a -> ns/b -> ns/a".
func describeCycle(comp []types.NamespacedName, edges map[types.NamespacedName][]types.NamespacedName) string {
	in := map[types.NamespacedName]bool{}
	start := comp[0]
	for _, m := range comp {
		in[m] = true
		if m.String() < start.String() {
			start = m
		}
	}
	path := []string{start.String()}
	visited := map[types.NamespacedName]bool{start: true}
	cur := start
	for {
		var nxt types.NamespacedName
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
		path = append(path, nxt.String())
		if visited[nxt] {
			break
		}
		visited[nxt] = true
		cur = nxt
	}
	return strings.Join(path, " -> ")
}

func contains(keys []types.NamespacedName, k types.NamespacedName) bool {
	for _, x := range keys {
		if x == k {
			return true
		}
	}
	return false
}
