package kbuild_test

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/ferry-gitops/ferry/kbuild"
)

func obj(t *testing.T, doc string) *unstructured.Unstructured {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
		t.Fatal(err)
	}
	return &unstructured.Unstructured{Object: m}
}

func TestMigrateFluxAPIs(t *testing.T) {
	for _, tt := range []struct {
		name, doc, wantVersion, wantErr string
		migrated                        int
	}{
		{"v1beta2 OCIRepository", "apiVersion: source.toolkit.fluxcd.io/v1beta2\nkind: OCIRepository\nmetadata: {name: k, namespace: flux-system}\nspec: {url: oci://ghcr.io/k, ref: {tag: v1}, interval: 1h, provider: generic, verify: {provider: cosign}}", "source.toolkit.fluxcd.io/v1", "", 1},
		{"v2beta2 HelmRelease", "apiVersion: helm.toolkit.fluxcd.io/v2beta2\nkind: HelmRelease\nmetadata: {name: p}\nspec: {interval: 5m, chart: {spec: {chart: podinfo, sourceRef: {kind: HelmRepository, name: p}}}, driftDetection: {mode: enabled}}", "helm.toolkit.fluxcd.io/v2", "", 1},
		{"v1 stays", "apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata: {name: g}\nspec: {url: https://x, interval: 1m}", "source.toolkit.fluxcd.io/v1", "", 0},
		{"other kinds stay", "apiVersion: v1beta2\nkind: ConfigMap\nmetadata: {name: c}", "v1beta2", "", 0},
		{"dropped field refused", "apiVersion: kustomize.toolkit.fluxcd.io/v1beta2\nkind: Kustomization\nmetadata: {name: apps, namespace: flux-system}\nspec: {interval: 1m, sourceRef: {kind: GitRepository, name: g}, prune: true, patchesStrategicMerge: [{kind: Deployment}]}", "", "Kustomization flux-system/apps is of kustomize.toolkit.fluxcd.io/v1beta2", 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := obj(t, tt.doc)
			done, err := kbuild.MigrateFluxAPIs([]*unstructured.Unstructured{o})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "patchesStrategicMerge") || !strings.Contains(err.Error(), "fix:") {
					t.Fatalf("err = %v, want one naming the object, the field and the fix", err)
				}
				if o.GetAPIVersion() != "kustomize.toolkit.fluxcd.io/v1beta2" {
					t.Fatalf("a refused object was changed to %s", o.GetAPIVersion())
				}
				return
			}
			if err != nil || o.GetAPIVersion() != tt.wantVersion {
				t.Fatalf("apiVersion %s, err %v; want %s", o.GetAPIVersion(), err, tt.wantVersion)
			}
			if len(done) != tt.migrated {
				t.Fatalf("migrated %v, want %d", done, tt.migrated)
			}
		})
	}
}
