package bundle_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/ferry-gitops/ferry/bundle"
)

// layerOf builds a cluster layer the way mirror pack does: each document's canonical YAML after
// its "# Source:" line, joined with "---\n".
func layerOf(t testing.TB, docs ...[2]string) []byte {
	t.Helper()
	var b bytes.Buffer
	for i, d := range docs {
		if i > 0 {
			b.WriteString(bundle.ClusterDocumentSeparator)
		}
		j, err := yaml.YAMLToJSON([]byte(d[1]))
		if err != nil {
			t.Fatal(err)
		}
		y, err := yaml.JSONToYAML(j)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString(bundle.ClusterSourcePrefix + d[0] + "\n")
		b.Write(y)
	}
	return b.Bytes()
}

// encodeClusterObjects writes decoded objects back as a layer, from their objects (not their
// YAML).
func encodeClusterObjects(t testing.TB, objs []bundle.ClusterDocument) []byte {
	t.Helper()
	var b bytes.Buffer
	for i, o := range objs {
		if i > 0 {
			b.WriteString(bundle.ClusterDocumentSeparator)
		}
		j, err := json.Marshal(o.Object)
		if err != nil {
			t.Fatal(err)
		}
		y, err := yaml.JSONToYAML(j)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString(bundle.ClusterSourcePrefix + o.Source + "\n")
		b.Write(y)
	}
	return b.Bytes()
}

const (
	nsDoc = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: apps\n"
	cmDoc = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  namespace: apps\ndata:\n  replicas: \"3\"\n"
	hrDoc = "apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata:\n  name: web\n  namespace: apps\nspec:\n  interval: 1m\n  maxHistory: 3\n"
)

func TestDecodeClusterLayer(t *testing.T) {
	data := layerOf(t, [2]string{"apps/cm.yaml", cmDoc}, [2]string{"apps/cm.yaml", hrDoc}, [2]string{"ns.yaml", nsDoc})
	objs, err := bundle.DecodeClusterLayer(data)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range objs {
		got = append(got, where(o))
	}
	want := "apps/cm.yaml document 1 (ConfigMap apps/c); apps/cm.yaml document 2 (HelmRelease apps/web); ns.yaml document 1 (Namespace apps)"
	if strings.Join(got, "; ") != want {
		t.Fatalf("decoded %s, want %s", strings.Join(got, "; "), want)
	}
	if v, ok := objs[1].Object["spec"].(map[string]any)["maxHistory"].(int64); !ok || v != 3 {
		t.Fatalf("an integer decodes as int64, as the Kubernetes client decodes it: %#v", objs[1].Object["spec"])
	}
	if !bytes.Equal(encodeClusterObjects(t, objs), data) {
		t.Fatal("the objects do not encode back to the layer")
	}
	if objs, err := bundle.DecodeClusterLayer(nil); err != nil || len(objs) != 0 {
		t.Fatalf("an empty layer: %v, %v", objs, err)
	}
}

// Every malformed layer is refused with the file and document named.
func TestDecodeClusterLayerRefuses(t *testing.T) {
	good := string(layerOf(t, [2]string{"a.yaml", nsDoc}))
	for _, tc := range []struct{ name, data, want string }{
		{"no source line", nsDoc, "document 1 of the layer does not open with a \"# Source:\" line"},
		{"second without source", good + "---\n" + nsDoc, "document 2 of the layer does not open"},
		{"absolute source", "# Source: /etc/x.yaml\n" + nsDoc, "not a relative path"},
		{"dotdot source", "# Source: a/../../x.yaml\n" + nsDoc, "not a clean relative path"},
		{"control characters", "# Source: a\x1b[2J.yaml\n" + nsDoc, "control characters"},
		{"empty source", "# Source: \n" + nsDoc, "empty"},
		{"no final newline", strings.TrimSuffix(good, "\n"), "do not end with a newline"},
		{"not canonical", "# Source: a.yaml\nkind: Namespace\napiVersion: v1\nmetadata: {name: apps}\n", "a.yaml document 1: not in the canonical encoding"},
		{"comment inside", "# Source: a.yaml\napiVersion: v1 # hidden\nkind: Namespace\nmetadata:\n  name: apps\n", "a.yaml document 1: not in the canonical encoding"},
		{"bad yaml", "# Source: a.yaml\napiVersion: [\n", "a.yaml document 1: not valid YAML"},
		{"list", "# Source: a.yaml\n- a\n- b\n", "a.yaml document 1: not a Kubernetes object"},
		{"empty document", "# Source: a.yaml\n", "a.yaml document 1: not a Kubernetes object"},
		{"no name", string(layerOf(t, [2]string{"a.yaml", nsDoc}, [2]string{"a.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  namespace: x\n"})), "a.yaml document 2: not a Kubernetes object: metadata.name required"},
		{"name not a string", string(layerOf(t, [2]string{"a.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: 3\n"})), "a.yaml document 1: metadata.name: want a string"},
		{"namespace not a string", string(layerOf(t, [2]string{"a.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  namespace: [x]\n"})), "metadata.namespace: want a string"},
		{"bad apiVersion", string(layerOf(t, [2]string{"a.yaml", "apiVersion: a/b/c\nkind: ConfigMap\nmetadata:\n  name: a\n"})), "apiVersion \"a/b/c\""},
		{"duplicate", string(layerOf(t, [2]string{"a.yaml", nsDoc}, [2]string{"b.yaml", nsDoc})), "b.yaml document 1: Namespace apps is already defined by a.yaml document 1"},
		{"too large", "# Source: a.yaml\n" + strings.Repeat("#", bundle.MaxClusterManifestsSize), "more than 16777216"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := bundle.DecodeClusterLayer([]byte(tc.data))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one saying %q", err, tc.want)
			}
		})
	}
}

// FuzzDecodeClusterLayer feeds the cluster-layer decoder arbitrary bytes: it never panics, and
// whatever it accepts is exactly what its objects encode to, so the objects applied are the
// bytes signed.
func FuzzDecodeClusterLayer(f *testing.F) {
	f.Add(layerOf(f, [2]string{"apps/cm.yaml", cmDoc}, [2]string{"apps/cm.yaml", hrDoc}, [2]string{"ns.yaml", nsDoc}))
	f.Add(layerOf(f, [2]string{"a.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  x: |\n    ---\n    line\n  y: \"---\"\n"}))
	f.Add([]byte("# Source: a.yaml\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: &a x\n  labels: {l: *a}\n"))
	f.Add([]byte("# Source: a.yaml\napiVersion: v1\nkind: X\nmetadata:\n  name: a\nspec:\n  n: 12345678901234567890123\n  f: 1.5e+300\n"))
	f.Add([]byte("# Source: a.yaml\n---\n# Source: b.yaml\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, err := bundle.DecodeClusterLayer(data)
		if err != nil {
			if !strings.Contains(err.Error(), "document") && !strings.Contains(err.Error(), "manifests") {
				t.Fatalf("an error that names no document: %v", err)
			}
			return
		}
		if got := encodeClusterObjects(t, objs); !bytes.Equal(got, data) {
			t.Fatalf("accepted a layer its objects do not encode back to:\n%q\n%q", data, got)
		}
		for _, o := range objs {
			md, _ := o.Object["metadata"].(map[string]any)
			if o.Object["apiVersion"] == "" || o.Object["kind"] == "" || md["name"] == "" || o.Index < 1 || bundle.CheckClusterSource(o.Source) != nil {
				t.Fatalf("accepted an incomplete object: %s %#v", where(o), o.Object)
			}
			if !bytes.Contains(data, o.YAML) {
				t.Fatalf("a document's YAML is not the layer's bytes: %q", o.YAML)
			}
		}
	})
}

// where names the document and the object as reconcile does: "apps.yaml document 2 (ConfigMap ns/x)".
func where(d bundle.ClusterDocument) string {
	md, _ := d.Object["metadata"].(map[string]any)
	name, _ := md["name"].(string)
	if ns, _ := md["namespace"].(string); ns != "" {
		name = ns + "/" + name
	}
	return fmt.Sprintf("%s document %d (%s %s)", d.Source, d.Index, d.Object["kind"], name)
}
