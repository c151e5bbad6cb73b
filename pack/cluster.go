package pack

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/spec"
)

// FluxRootsSource is the "# Source:" of the cluster documents a spec's Flux entry points add
// (the objects flux bootstrap's gotk-sync.yaml would hold).
const FluxRootsSource = "ferry.yaml#flux"

// ClusterItem reads the spec's cluster folder (checking it again) and pushes the cluster item
// into l: an OCI image manifest with artifactType bundle.ClusterArtifactType, the empty config
// and one layer of the objects (bundle.EncodeClusterLayer). Its revision is the layer's digest.
// roots are the root objects of the spec's Flux entry points (discover.Result.Roots); they
// follow the folder's documents, from FluxRootsSource.
func ClusterItem(ctx context.Context, l *bundle.Layout, s *spec.Spec, roots ...map[string]any) (bundle.Item, error) {
	docs, err := s.ClusterDocuments()
	if err != nil {
		return bundle.Item{}, err
	}
	source := FluxRootsSource
	if s.Cluster != nil {
		source = s.Cluster.Path
	}
	layerDocs := make([]bundle.ClusterDocument, len(docs))
	for i, d := range docs {
		layerDocs[i] = d.ClusterDocument
	}
	for i, r := range roots {
		j, err := json.Marshal(r)
		if err != nil {
			return bundle.Item{}, fmt.Errorf("cluster: flux root object %d: %w", i+1, err)
		}
		obj, y, err := bundle.CanonicalClusterObject(j)
		if err != nil {
			return bundle.Item{}, fmt.Errorf("cluster: flux root object %d: %w", i+1, err)
		}
		layerDocs = append(layerDocs, bundle.ClusterDocument{Source: FluxRootsSource, Index: i + 1, YAML: y, Object: obj})
	}
	layer := bundle.EncodeClusterLayer(layerDocs)
	if len(layer) > bundle.MaxClusterManifestsSize {
		return bundle.Item{}, fmt.Errorf("cluster %s: the encoded manifests are %d bytes, more than %d", source, len(layer), bundle.MaxClusterManifestsSize)
	}
	push := func(d ocispec.Descriptor, data []byte) error {
		if err := l.Push(ctx, d, bytes.NewReader(data)); err != nil {
			return fmt.Errorf("cluster %s: push %s: %w", source, d.Digest, err)
		}
		return nil
	}
	if err := push(bundle.ClusterConfig(), ocispec.DescriptorEmptyJSON.Data); err != nil {
		return bundle.Item{}, err
	}
	ld := bundle.ClusterLayerDescriptor(layer)
	if err := push(ld, layer); err != nil {
		return bundle.Item{}, err
	}
	raw, md, err := bundle.ClusterManifest(ld)
	if err != nil {
		return bundle.Item{}, fmt.Errorf("cluster %s: manifest: %w", source, err)
	}
	if err := push(md, raw); err != nil {
		return bundle.Item{}, err
	}
	return bundle.Item{
		Name:       bundle.ClusterItemName,
		Kind:       bundle.KindCluster,
		Source:     source,
		Revision:   string(ld.Digest),
		Descriptor: md,
	}, nil
}
