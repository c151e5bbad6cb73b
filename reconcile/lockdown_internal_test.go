package reconcile

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

func TestParseTenant(t *testing.T) {
	for _, tc := range []struct {
		doc, ns, want string
		items         []string
	}{
		{doc: "metadata: {name: team1}\nspec: {items: [a, b]}", ns: "team1", items: []string{"a", "b"}},
		{doc: "metadata: {name: team1}\nspec: {namespace: apps, items: []}", ns: "apps"},
		{doc: "metadata: {name: team1}\nspec: {namespaces: [apps]}", want: "spec.namespaces: unknown field"},
		{doc: "metadata: {name: team1}\nspec: {items: [1]}", want: "spec.items: want item names"},
		{doc: "metadata: {name: team1}\nspec: {items: a}", want: "want a list"},
		{doc: "metadata: {name: team1}", want: "spec {namespace, items} is required"},
		{doc: "metadata: {}\nspec: {}", want: "metadata.name is required"},
		{doc: "metadata: {name: team1}\nspec: {}\nstatus: {}", want: `unknown field "status"`},
	} {
		var m map[string]any
		if err := yaml.Unmarshal([]byte("apiVersion: ferry.dev/v1alpha1\nkind: Tenant\n"+tc.doc), &m); err != nil {
			t.Fatal(err)
		}
		o := clusterObject{source: "tenants.yaml", index: 1, obj: &unstructured.Unstructured{Object: m}}
		if !isTenant(o.obj) {
			t.Fatalf("%q is not a Tenant", tc.doc)
		}
		g, err := parseTenant(o)
		if tc.want != "" {
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "tenants.yaml document 1") {
				t.Fatalf("%q: %v, want an error naming the document and saying %q", tc.doc, err, tc.want)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if g.namespace != tc.ns || len(g.items) != len(tc.items) {
			t.Fatalf("%q: %+v", tc.doc, g)
		}
		for _, it := range tc.items {
			if !g.items[it] {
				t.Fatalf("%q: item %s not granted", tc.doc, it)
			}
		}
	}
}
