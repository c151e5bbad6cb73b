package discover

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

func TestParseImage(t *testing.T) {
	for _, tt := range []struct{ in, want, err string }{
		{in: "redis", want: "docker.io/library/redis:latest"},
		{in: "redis:8.6.2", want: "docker.io/library/redis:8.6.2"},
		{in: "bitnami/redis:7", want: "docker.io/bitnami/redis:7"},
		{in: "docker.io/library/redis:7", want: "docker.io/library/redis:7"},
		{in: "index.docker.io/library/redis:7", want: "docker.io/library/redis:7"},
		{in: "ghcr.io/stefanprodan/podinfo:6.9.2", want: "ghcr.io/stefanprodan/podinfo:6.9.2"},
		{in: "localhost:5000/app:v1", want: "localhost:5000/app:v1"},
		{in: "ghcr.io/a/b@sha256:" + strings.Repeat("a", 64), want: "ghcr.io/a/b@sha256:" + strings.Repeat("a", 64)},
		{in: "ghcr.io/a/b:v1@sha256:" + strings.Repeat("b", 64), want: "ghcr.io/a/b@sha256:" + strings.Repeat("b", 64)},
		{in: "ghcr.io/a/${APP}:v1", err: "unresolved variable"},
		{in: "Upper/Case:v1", err: "image \"Upper/Case:v1\""},
		{in: "ghcr.io/a:b:c", err: "image"},
	} {
		got, err := parseImage(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("parseImage(%q) = %v, %v; want an error with %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || got.String() != tt.want {
			t.Errorf("parseImage(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func FuzzParseImage(f *testing.F) {
	for _, s := range []string{"redis", "ghcr.io/a/b:v1", "a@sha256:" + strings.Repeat("0", 64), "x:1:2", "${A}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := parseImage(s)
		if err != nil {
			return
		}
		if r.repo == "" || (r.tag == "") == (r.digest == "") {
			t.Fatalf("parseImage(%q) = %+v: want a repository and one of tag and digest", s, r)
		}
		if again, err := parseImage(r.String()); err != nil || again != r {
			t.Fatalf("parseImage(%q) = %q, which reads back as %+v, %v", s, r, again, err)
		}
	})
}

func TestItemName(t *testing.T) {
	long := strings.Repeat("abc/", 60)
	for _, tt := range []struct {
		parts []string
		want  string
	}{
		{[]string{"podinfo", "6.9.2"}, "podinfo-6-9-2"},
		{[]string{"Stefanprodan--Podinfo", "v1.0.0-rc.1"}, "stefanprodan-podinfo-v1-0-0-rc-1"},
		{[]string{"cluster"}, "x-cluster"},
		{[]string{"%%%"}, "x-"},
	} {
		if got := itemName(tt.parts...); got != tt.want {
			t.Errorf("itemName(%q) = %q, want %q", tt.parts, got, tt.want)
		}
	}
	if n := itemName(long); len(n) > 128 || n == itemName(long+"x") {
		t.Errorf("itemName of a long name = %q (%d): want at most 128 characters, distinct for distinct names", n, len(n))
	}
	n := namer{used: map[string]bool{"a": true}}
	if got := []string{n.take("a"), n.take("a"), n.take("b")}; strings.Join(got, ",") != "a-2,a-3,b" {
		t.Errorf("namer hands out %v", got)
	}
}

func TestImagesOf(t *testing.T) {
	for _, tt := range []struct{ doc, want string }{
		{"kind: Pod\nspec: {containers: [{image: a}], initContainers: [{image: b}], ephemeralContainers: [{image: c}]}", "b a c"},
		{"kind: Deployment\nspec: {template: {spec: {containers: [{image: a}, {image: a}, {image: ' b '}]}}}", "a b"},
		{"kind: CronJob\nspec: {jobTemplate: {spec: {template: {spec: {containers: [{image: job}]}}}}}", "job"},
		{"kind: StatefulSet\nspec: {template: {spec: {containers: [{name: no-image}]}}}", ""},
		{"kind: ConfigMap\ndata: {image: not-a-workload}", ""},
		{"kind: Deployment\nspec: {template: {spec: {containers: not-a-list}}}", ""},
	} {
		var m map[string]any
		if err := yaml.Unmarshal([]byte(tt.doc), &m); err != nil {
			t.Fatal(err)
		}
		got := strings.Join(imagesOf(&unstructured.Unstructured{Object: m}), " ")
		if got != tt.want {
			t.Errorf("imagesOf(%s) = %q, want %q", tt.doc, got, tt.want)
		}
	}
}
