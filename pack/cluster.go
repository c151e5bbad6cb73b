package pack

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/spec"
)

// ClusterLayer returns the layer of the cluster item for docs: each document's canonical
// YAML preceded by a "# Source: <path>" line, joined with "---\n". Its bytes are a function of
// docs alone.
func ClusterLayer(docs []spec.ClusterDocument) []byte {
	var b bytes.Buffer
	for i, d := range docs {
		if i > 0 {
			b.WriteString(bundle.ClusterDocumentSeparator)
		}
		b.WriteString(bundle.ClusterSourcePrefix)
		b.WriteString(d.Source)
		b.WriteByte('\n')
		b.Write(d.YAML)
	}
	return b.Bytes()
}

// ClusterItem reads the spec's cluster folder (checking it again) and pushes the cluster item
// into l: an OCI image manifest with artifactType bundle.ClusterArtifactType, the empty config
// and one layer of the objects. Its revision is the layer's digest.
func ClusterItem(ctx context.Context, l *bundle.Layout, s *spec.Spec) (bundle.Item, error) {
	docs, err := s.ClusterDocuments()
	if err != nil {
		return bundle.Item{}, err
	}
	layer := ClusterLayer(docs)
	if len(layer) > bundle.MaxClusterManifestsSize {
		return bundle.Item{}, fmt.Errorf("cluster %s: the encoded manifests are %d bytes, more than %d", s.Cluster.Path, len(layer), bundle.MaxClusterManifestsSize)
	}
	push := func(d ocispec.Descriptor, data []byte) error {
		if err := l.Push(ctx, d, bytes.NewReader(data)); err != nil {
			return fmt.Errorf("cluster %s: push %s: %w", s.Cluster.Path, d.Digest, err)
		}
		return nil
	}
	empty := ocispec.Descriptor{MediaType: ocispec.MediaTypeEmptyJSON, Digest: ocispec.DescriptorEmptyJSON.Digest, Size: ocispec.DescriptorEmptyJSON.Size}
	if err := push(empty, ocispec.DescriptorEmptyJSON.Data); err != nil {
		return bundle.Item{}, err
	}
	ld := ocispec.Descriptor{
		MediaType:   bundle.ClusterManifestsMediaType,
		Digest:      digest.FromBytes(layer),
		Size:        int64(len(layer)),
		Annotations: map[string]string{ocispec.AnnotationTitle: "cluster.yaml"},
	}
	if err := push(ld, layer); err != nil {
		return bundle.Item{}, err
	}
	raw, err := json.Marshal(ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: bundle.ClusterArtifactType,
		Config:       empty,
		Layers:       []ocispec.Descriptor{ld},
	})
	if err != nil {
		return bundle.Item{}, err
	}
	md := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, ArtifactType: bundle.ClusterArtifactType, Digest: digest.FromBytes(raw), Size: int64(len(raw))}
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
