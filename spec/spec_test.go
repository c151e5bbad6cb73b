package spec_test

import (
	"strings"
	"testing"
	"time"

	"github.com/ferry-gitops/ferry/spec"
)

func TestLoadValid(t *testing.T) {
	s, err := spec.Load("testdata/ferry.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Git) != 1 || len(s.Charts) != 2 || len(s.Images) != 2 || s.Bundle.Expires.Duration != 168*time.Hour {
		t.Fatalf("parsed %+v", s)
	}
	if s.Images[1].WantSignatures() || !s.Images[0].WantSignatures() {
		t.Fatal("signatures default true, false when set false")
	}
	if s.Git[0].Deadline() != spec.DefaultTimeout {
		t.Fatalf("git timeout %s, want the default %s", s.Git[0].Deadline(), spec.DefaultTimeout)
	}
	s2, err := spec.Parse("ferry.yaml", []byte("apiVersion: ferry.dev/v1alpha1\nkind: Mirror\ncharts:\n  - name: c\n    repository: https://c.example\n    version: 1.0.0\n    timeout: 90s\n    allowedHosts: [cdn.example, 127.0.0.1:8080]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s2.Charts[0].Deadline() != 90*time.Second || len(s2.Charts[0].AllowedHosts) != 2 {
		t.Fatalf("chart %+v", s2.Charts[0])
	}
	if !s.Charts[1].IsOCI() || s.Charts[1].ChartName() != "podinfo" || s.Charts[0].ChartName() != "podinfo" {
		t.Fatalf("charts %+v", s.Charts)
	}
}

func TestErrorsNameTheField(t *testing.T) {
	head := "apiVersion: ferry.dev/v1alpha1\nkind: Mirror\n"
	img := "images:\n  - name: app\n    image: r.example/app\n    tag: v1\n"
	cases := []struct {
		name, yaml string
		want       []string
	}{
		{"unknown top-level field", head + img + "imagez: []\n", []string{"imagez: unknown field"}},
		{"unknown nested field", head + "images:\n  - name: app\n    image: r.example/app\n    tagg: v1\n", []string{"images[0].tagg: unknown field", "images[0]: set exactly one of digest, semver, tag (set: none)"}},
		{"bad semver range", head + "images:\n  - name: app\n    image: r.example/app\n    semver: '>=banana'\n", []string{"images[0].semver: \">=banana\" is not a semver range"}},
		{"two refs", head + "git:\n  - name: p\n    url: https://g.example/p.git\n    ref: {branch: main, tag: v1}\n", []string{"git[0].ref: set exactly one of branch, commit, semver, tag (set: branch, tag)"}},
		{"short commit", head + "git:\n  - name: p\n    url: https://g.example/p.git\n    ref: {commit: abc}\n", []string{"git[0].ref.commit: \"abc\" is not a full 40-character commit hash"}},
		{"path escape", head + "git:\n  - name: p\n    url: https://g.example/p.git\n    ref: {branch: main}\n    paths: [../etc]\n", []string{"git[0].paths[0]"}},
		{"duplicate name", head + img + "  - name: app\n    image: r.example/other\n    tag: v2\n", []string{"images[1].name: \"app\" is already the name of images[0]"}},
		{"reserved name", head + "images:\n  - name: bundle\n    image: r.example/app\n    tag: v1\n", []string{"images[0].name: \"bundle\""}},
		{"tag in image", head + "images:\n  - name: app\n    image: r.example/app:v1\n    tag: v1\n", []string{"images[0].image: \"r.example/app:v1\": want a repository without tag"}},
		{"chart without version", head + "charts:\n  - name: c\n    repository: https://c.example\n", []string{"charts[0].version: required"}},
		{"chart repo scheme", head + "charts:\n  - name: c\n    repository: ftp://c.example\n    version: 1.0.0\n", []string{"charts[0].repository: \"ftp://c.example\""}},
		{"wrong kind", "apiVersion: v1\nkind: ConfigMap\n" + img, []string{"apiVersion: \"v1\"", "kind: \"ConfigMap\""}},
		{"bad duration", head + img + "bundle:\n  expires: soon\n", []string{"\"soon\" is not a duration"}},
		{"wrong type", head + "images: yes\n", []string{"images: want []spec.Image"}},
		{"empty", head, []string{"lists nothing to carry"}},
		{"bad platform", head + "images:\n  - name: app\n    image: r.example/app\n    tag: v1\n    platforms: [amd64]\n", []string{"images[0].platforms[0]: \"amd64\""}},
		{"not yaml", "\t: :", []string{"not valid YAML"}},
		{"negative timeout", head + "git:\n  - name: p\n    url: https://g.example/p.git\n    ref: {branch: main}\n    timeout: -1s\n", []string{"git[0].timeout: -1s is negative"}},
		{"bad timeout", head + img + "    timeout: soon\n", []string{"\"soon\" is not a duration"}},
		{"allowed host with scheme", head + "charts:\n  - name: c\n    repository: https://c.example\n    version: 1.0.0\n    allowedHosts: [https://cdn.example/x]\n", []string{"charts[0].allowedHosts[0]: \"https://cdn.example/x\""}},
		{"allowed hosts on oci", head + "charts:\n  - name: c\n    repository: oci://r.example/charts\n    version: 1.0.0\n    allowedHosts: [cdn.example]\n", []string{"charts[0].allowedHosts: only an HTTP(S) chart repository"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := spec.Parse("ferry.yaml", []byte(c.yaml))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error does not contain %q:\n%v", w, err)
				}
			}
			if !strings.HasPrefix(err.Error(), "spec ferry.yaml:") {
				t.Fatalf("error does not name the file: %v", err)
			}
		})
	}
}
