package bundle

import (
	"fmt"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// The chart item format: a Helm OCI chart manifest as `helm push` lays it out, shared by the
// side that writes it (fetch) and the side that reads it (reconcile); docs/chart-artifacts.md
// describes it. The values are Helm's (helm.sh/helm/v4/pkg/registry), written here so that
// the format does not pull the Helm SDK into both halves of Ferry.
const (
	// ChartConfigMediaType is the media type of a chart manifest's config: Chart.yaml as JSON.
	ChartConfigMediaType = "application/vnd.cncf.helm.config.v1+json"
	// ChartLayerMediaType is the media type of the chart archive layer (the .tgz).
	ChartLayerMediaType = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
	// ChartLegacyLayerMediaType is the chart archive's media type in charts pushed by old Helm.
	ChartLegacyLayerMediaType = "application/tar+gzip"
	// ChartProvenanceMediaType is the media type of the provenance layer (the .prov file).
	ChartProvenanceMediaType = "application/vnd.cncf.helm.chart.provenance.v1.prov"
)

// CheckChartConfig checks that a manifest is a Helm chart's: its config has the chart
// config's media type.
func CheckChartConfig(m ocispec.Manifest) error {
	if m.Config.MediaType != ChartConfigMediaType {
		return fmt.Errorf("config media type %q, want a Helm chart's %q", m.Config.MediaType, ChartConfigMediaType)
	}
	return nil
}

// ChartLayer returns a chart manifest's one chart archive layer (of ChartLayerMediaType or
// ChartLegacyLayerMediaType); a manifest with none or several is refused.
func ChartLayer(m ocispec.Manifest) (ocispec.Descriptor, error) {
	var found []ocispec.Descriptor
	for _, l := range m.Layers {
		if l.MediaType == ChartLayerMediaType || l.MediaType == ChartLegacyLayerMediaType {
			found = append(found, l)
		}
	}
	if len(found) != 1 {
		return ocispec.Descriptor{}, fmt.Errorf("%d chart archive layers (%s), want exactly one", len(found), ChartLayerMediaType)
	}
	return found[0], nil
}
