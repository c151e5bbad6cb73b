package reconcile

import (
	"strings"
	"testing"

	kustomizev1 "github.com/fluxcd/kustomize-controller/api/v1"
	"k8s.io/apimachinery/pkg/types"
)

func ks(deps map[string][]string) []*kustomizev1.Kustomization {
	var out []*kustomizev1.Kustomization
	for name, ds := range deps {
		k := &kustomizev1.Kustomization{}
		k.Namespace, k.Name = "ns", name
		for _, d := range ds {
			k.Spec.DependsOn = append(k.Spec.DependsOn, kustomizev1.DependencyReference{Name: d})
		}
		out = append(out, k)
	}
	return out
}

func TestPlan(t *testing.T) {
	for _, tc := range []struct {
		name   string
		deps   map[string][]string
		order  string
		cycles map[string]string
	}{
		{"reverse names", map[string][]string{"z": nil, "y": {"z"}, "x": {"y"}}, "z y x", nil},
		{"independent by name", map[string][]string{"b": nil, "a": nil, "c": nil}, "a b c", nil},
		{"diamond", map[string][]string{"top": {"l", "r"}, "l": {"base"}, "r": {"base"}, "base": nil}, "base l r top", nil},
		{"missing dependency ignored", map[string][]string{"a": {"gone"}}, "a", nil},
		{"two-cycle", map[string][]string{"kx": {"ky"}, "ky": {"kx"}, "kz": {"kx"}}, "kx ky kz",
			map[string]string{"kx": "ns/kx -> ns/ky -> ns/kx", "ky": "ns/kx -> ns/ky -> ns/kx"}},
		{"self", map[string][]string{"s": {"s"}}, "s", map[string]string{"s": "ns/s -> ns/s"}},
		{"three-cycle", map[string][]string{"a": {"c"}, "b": {"a"}, "c": {"b"}}, "a b c",
			map[string]string{"a": "ns/a -> ns/c -> ns/b -> ns/a", "b": "ns/a -> ns/c -> ns/b -> ns/a", "c": "ns/a -> ns/c -> ns/b -> ns/a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			order, cycles := plan(ks(tc.deps))
			var names []string
			for _, k := range order {
				names = append(names, k.Name)
			}
			if got := strings.Join(names, " "); got != tc.order {
				t.Errorf("order %q, want %q", got, tc.order)
			}
			if len(cycles) != len(tc.cycles) {
				t.Fatalf("cycles %v, want %v", cycles, tc.cycles)
			}
			for name, want := range tc.cycles {
				if got := cycles[types.NamespacedName{Namespace: "ns", Name: name}]; got != want {
					t.Errorf("cycle of %s = %q, want %q", name, got, want)
				}
			}
		})
	}
}
