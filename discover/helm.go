package discover

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	release "helm.sh/helm/v4/pkg/release/v1"
	"helm.sh/helm/v4/pkg/storage"
	"helm.sh/helm/v4/pkg/storage/driver"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
)

// renderChart renders a chart archive with values as `helm template` does (client only, the
// default capabilities, CRDs included), and returns the rendered objects and hooks; test
// hooks only with tests (they run only when the HelmRelease enables tests).
func renderChart(ctx context.Context, archive []byte, releaseName, namespace string, values map[string]any, tests bool) ([]*unstructured.Unstructured, error) {
	ch, err := loader.LoadArchive(bytes.NewReader(archive))
	if err != nil {
		return nil, fmt.Errorf("load chart: %w", err)
	}
	cfg := &action.Configuration{Releases: storage.Init(driver.NewMemory())}
	cfg.SetLogger(slog.DiscardHandler)
	in := action.NewInstall(cfg)
	in.DryRunStrategy = action.DryRunClient
	in.ReleaseName = releaseName
	in.Namespace = namespace
	in.IncludeCRDs = true
	in.Replace = true
	if values == nil {
		values = map[string]any{}
	}
	rel, err := in.RunWithContext(ctx, ch, values)
	if err != nil {
		return nil, fmt.Errorf("render chart %s %s: %w", ch.Name(), ch.Metadata.Version, err)
	}
	r, ok := rel.(*release.Release)
	if !ok {
		return nil, fmt.Errorf("render chart %s: unexpected release type %T", ch.Name(), rel)
	}
	manifest := r.Manifest
	for _, h := range r.Hooks {
		if !tests && slices.Contains(h.Events, release.HookTest) {
			continue
		}
		manifest += "\n---\n" + h.Manifest
	}
	return decodeObjects([]byte(manifest))
}

// decodeObjects reads a stream of YAML documents into objects, skipping empty ones.
func decodeObjects(data []byte) ([]*unstructured.Unstructured, error) {
	d := k8syaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := d.Decode(&m); err != nil {
			if err == io.EOF {
				return out, nil
			}
			return out, err
		}
		if len(m) == 0 {
			continue
		}
		out = append(out, &unstructured.Unstructured{Object: m})
	}
}
