package reconcile

import (
	"bytes"
	"context"
	"fmt"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/cache"
)

// maxChartSize bounds a chart archive read from the cache.
const maxChartSize = bundle.MaxChartSize

// chartItem is a chart item of the current bundle.
type chartItem struct {
	name    string
	version string
	layer   ocispec.Descriptor // the chart archive (.tgz)
}

// findChart looks up a chart item by name in rec and finds its chart layer.
func findChart(ctx context.Context, c *cache.Snapshot, rec *cache.Record, name string) (*chartItem, error) {
	item, err := recordItem(rec, name, bundle.KindChart)
	if err != nil {
		return nil, err
	}
	var m ocispec.Manifest
	if err := readJSON(ctx, c, item.Root, &m); err != nil {
		return nil, fmt.Errorf("chart item %q: manifest: %w", name, err)
	}
	ch := &chartItem{name: name, version: item.Revision}
	if ch.layer, err = bundle.ChartLayer(m); err != nil {
		return nil, fmt.Errorf("chart item %q: manifest: %w", name, err)
	}
	return ch, nil
}

// load reads the chart archive, verified, and loads it with Helm's loader; the chart must be
// at the item's version.
func (ch *chartItem) load(ctx context.Context, c *cache.Snapshot) (*chart.Chart, error) {
	b, err := c.ReadAll(ctx, ch.layer, maxChartSize)
	if err != nil {
		return nil, fmt.Errorf("chart archive: %w", err)
	}
	loaded, err := loader.LoadArchive(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("load chart archive: %w", err)
	}
	if loaded.Metadata == nil || loaded.Metadata.Version != ch.version {
		return nil, fmt.Errorf("chart archive of item %q is not at version %s", ch.name, ch.version)
	}
	return loaded, nil
}
