package pack

import (
	"bytes"
	"context"
	"fmt"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/spec"
)

// ClusterItem reads the spec's cluster folder (checking it again) and pushes the cluster item
// into l: an OCI image manifest with artifactType bundle.ClusterArtifactType, the empty config
// and one layer of the objects (bundle.EncodeClusterLayer). Its revision is the layer's digest.
func ClusterItem(ctx context.Context, l *bundle.Layout, s *spec.Spec) (bundle.Item, error) {
	docs, err := s.ClusterDocuments()
	if err != nil {
		return bundle.Item{}, err
	}
	layerDocs := make([]bundle.ClusterDocument, len(docs))
	for i, d := range docs {
		layerDocs[i] = d.ClusterDocument
	}
	layer := bundle.EncodeClusterLayer(layerDocs)
	if len(layer) > bundle.MaxClusterManifestsSize {
		return bundle.Item{}, fmt.Errorf("cluster %s: the encoded manifests are %d bytes, more than %d", s.Cluster.Path, len(layer), bundle.MaxClusterManifestsSize)
	}
	push := func(d ocispec.Descriptor, data []byte) error {
		if err := l.Push(ctx, d, bytes.NewReader(data)); err != nil {
			return fmt.Errorf("cluster %s: push %s: %w", s.Cluster.Path, d.Digest, err)
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
		return bundle.Item{}, fmt.Errorf("cluster %s: manifest: %w", s.Cluster.Path, err)
	}
	if err := push(md, raw); err != nil {
		return bundle.Item{}, err
	}
	return bundle.Item{
		Name:       bundle.ClusterItemName,
		Kind:       bundle.KindCluster,
		Source:     s.Cluster.Path,
		Revision:   string(ld.Digest),
		Descriptor: md,
	}, nil
}
