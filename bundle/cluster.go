package bundle

// The cluster item format, shared by the side that writes it (pack) and the side that reads it
// (reconcile); docs/bundle-format.md §3.3 describes it.
const (
	// ClusterItemName is the name of the cluster item `mirror pack` writes; a spec may not
	// give it to another item.
	ClusterItemName = "cluster"
	// ClusterArtifactType is the artifactType of the cluster item's manifest.
	ClusterArtifactType = "application/vnd.ferry.cluster.v1"
	// ClusterManifestsMediaType is the media type of its one layer: the cluster objects as
	// YAML documents.
	ClusterManifestsMediaType = "application/vnd.ferry.cluster.manifests.v1+yaml"
	// ClusterSourcePrefix starts the comment line that opens each document of the layer and
	// names the file it came from, relative to the spec's cluster.path.
	ClusterSourcePrefix = "# Source: "
	// ClusterDocumentSeparator separates the layer's documents.
	ClusterDocumentSeparator = "---\n"
	// MaxClusterManifestsSize bounds both the files read at pack time (together) and the layer.
	MaxClusterManifestsSize = 16 << 20
)
