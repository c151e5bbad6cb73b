package bundle

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/yaml"
)

// The cluster item format, shared by the side that writes it (spec, pack) and the side that
// reads it (reconcile); docs/bundle-format.md §3.3 describes it.
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
	// ClusterLayerTitle is the layer's org.opencontainers.image.title.
	ClusterLayerTitle = "cluster.yaml"
	// maxClusterSourceLen bounds the "# Source:" path of a document.
	maxClusterSourceLen = 4096
)

// ClusterDocument is one document of the cluster layer: one object in its canonical YAML and
// the file it came from.
type ClusterDocument struct {
	// Source is the file's path relative to the cluster folder, slash-separated.
	Source string
	// Index is the document's place among the documents of Source, from 1.
	Index int
	// YAML is the object in its one canonical encoding (see CanonicalClusterObject).
	YAML []byte
	// Object is the object decoded as the Kubernetes client decodes it (integers as int64).
	Object map[string]any
}

// EncodeClusterLayer returns the cluster layer of docs: each document's YAML preceded by its
// "# Source: <path>" line, joined with "---\n". Its bytes are a function of docs alone.
func EncodeClusterLayer(docs []ClusterDocument) []byte {
	var b bytes.Buffer
	b.Grow(ClusterLayerSize(docs))
	for i, d := range docs {
		if i > 0 {
			b.WriteString(ClusterDocumentSeparator)
		}
		b.WriteString(ClusterSourcePrefix)
		b.WriteString(d.Source)
		b.WriteByte('\n')
		b.Write(d.YAML)
	}
	return b.Bytes()
}

// ClusterLayerSize is the size of EncodeClusterLayer(docs).
func ClusterLayerSize(docs []ClusterDocument) int {
	n := 0
	for i, d := range docs {
		if i > 0 {
			n += len(ClusterDocumentSeparator)
		}
		n += len(ClusterSourcePrefix) + len(d.Source) + 1 + len(d.YAML)
	}
	return n
}

// ClusterManifest returns the cluster item's manifest for its layer: an OCI image manifest
// with artifactType ClusterArtifactType, the empty config and the one layer, and the
// manifest's descriptor (with the artifactType, as the root's entry carries it).
func ClusterManifest(layer ocispec.Descriptor) ([]byte, ocispec.Descriptor, error) {
	raw, err := json.Marshal(ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: ClusterArtifactType,
		Config:       ClusterConfig(),
		Layers:       []ocispec.Descriptor{layer},
	})
	if err != nil {
		return nil, ocispec.Descriptor{}, err
	}
	return raw, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, ArtifactType: ClusterArtifactType, Digest: digest.FromBytes(raw), Size: int64(len(raw))}, nil
}

// ClusterConfig is the descriptor of the cluster manifest's config: the OCI empty descriptor
// (its bytes are ocispec.DescriptorEmptyJSON.Data).
func ClusterConfig() ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: ocispec.MediaTypeEmptyJSON, Digest: ocispec.DescriptorEmptyJSON.Digest, Size: ocispec.DescriptorEmptyJSON.Size}
}

// ClusterLayerDescriptor is the descriptor of a cluster layer's bytes.
func ClusterLayerDescriptor(layer []byte) ocispec.Descriptor {
	return ocispec.Descriptor{
		MediaType:   ClusterManifestsMediaType,
		Digest:      digest.FromBytes(layer),
		Size:        int64(len(layer)),
		Annotations: map[string]string{ocispec.AnnotationTitle: ClusterLayerTitle},
	}
}

// CheckClusterRoot checks the cluster item's root descriptor before its manifest is read: an
// OCI image manifest.
func CheckClusterRoot(root ocispec.Descriptor) error {
	if root.MediaType != ocispec.MediaTypeImageManifest {
		return fmt.Errorf("root %s has media type %q, want %s", root.Digest, root.MediaType, ocispec.MediaTypeImageManifest)
	}
	return nil
}

// ClusterLayer checks the cluster item's manifest m (reached by root) and returns the
// descriptor of its one layer, a sha256 blob of at most MaxClusterManifestsSize bytes.
func ClusterLayer(root ocispec.Descriptor, m ocispec.Manifest) (ocispec.Descriptor, error) {
	if err := CheckClusterRoot(root); err != nil {
		return ocispec.Descriptor{}, err
	}
	if m.ArtifactType != ClusterArtifactType {
		return ocispec.Descriptor{}, fmt.Errorf("manifest %s: artifactType %q, want %s", root.Digest, m.ArtifactType, ClusterArtifactType)
	}
	if len(m.Layers) != 1 || m.Layers[0].MediaType != ClusterManifestsMediaType {
		return ocispec.Descriptor{}, fmt.Errorf("manifest %s: want one layer of type %s", root.Digest, ClusterManifestsMediaType)
	}
	l := m.Layers[0]
	if l.Size < 0 || l.Size > MaxClusterManifestsSize {
		return ocispec.Descriptor{}, fmt.Errorf("layer %s: %d bytes, at most %d", l.Digest, l.Size, MaxClusterManifestsSize)
	}
	if err := l.Digest.Validate(); err != nil || l.Digest.Algorithm() != digest.SHA256 {
		return ocispec.Descriptor{}, fmt.Errorf("layer %q: not a sha256 digest", l.Digest)
	}
	return l, nil
}

// DecodeClusterLayer decodes a cluster layer: documents separated by "---" lines, each
// opening with a "# Source: <path>" line, each in the canonical encoding EncodeClusterLayer
// writes, each one Kubernetes object with apiVersion, kind and metadata.name, no object twice.
// Errors name the file and the document.
func DecodeClusterLayer(data []byte) ([]ClusterDocument, error) {
	if len(data) > MaxClusterManifestsSize {
		return nil, fmt.Errorf("the manifests are %d bytes, more than %d", len(data), MaxClusterManifestsSize)
	}
	if len(data) == 0 {
		return nil, nil
	}
	if data[len(data)-1] != '\n' {
		return nil, errors.New("the manifests do not end with a newline")
	}
	sep := []byte("\n" + ClusterDocumentSeparator)
	parts := bytes.Split(data[:len(data)-1], sep)
	counts := map[string]int{}
	seen := map[string]string{}
	out := make([]ClusterDocument, 0, len(parts))
	for i, p := range parts {
		doc := make([]byte, len(p)+1)
		copy(doc, p)
		doc[len(p)] = '\n'
		line, body, ok := bytes.Cut(doc, []byte("\n"))
		src, hasSource := bytes.CutPrefix(line, []byte(ClusterSourcePrefix))
		if !ok || !hasSource {
			return nil, fmt.Errorf("document %d of the layer does not open with a %q line", i+1, strings.TrimSpace(ClusterSourcePrefix))
		}
		source := string(src)
		if err := CheckClusterSource(source); err != nil {
			return nil, fmt.Errorf("document %d of the layer: source %q: %v", i+1, truncate(source, 200), err)
		}
		counts[source]++
		d := ClusterDocument{Source: source, Index: counts[source], YAML: body}
		where := fmt.Sprintf("%s document %d", source, d.Index)
		obj, err := decodeClusterDocument(body)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", where, err)
		}
		d.Object = obj
		id, name := clusterObjectID(obj)
		if first, ok := seen[id]; ok {
			return nil, fmt.Errorf("%s: %s is already defined by %s", where, name, first)
		}
		seen[id] = where
		out = append(out, d)
	}
	return out, nil
}

// CheckClusterSource accepts a relative, slash-separated path without "..", control
// characters or invalid UTF-8: it only ever names a file in messages, but a message should not
// lie.
func CheckClusterSource(s string) error {
	switch {
	case s == "":
		return errors.New("empty")
	case len(s) > maxClusterSourceLen:
		return fmt.Errorf("longer than %d bytes", maxClusterSourceLen)
	case !utf8.ValidString(s):
		return errors.New("not UTF-8")
	case strings.HasPrefix(s, "/") || strings.Contains(s, "\\"):
		return errors.New("not a relative path")
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return errors.New("holds control characters")
	}
	for _, part := range strings.Split(s, "/") {
		if part == "" || part == "." || part == ".." {
			return errors.New("not a clean relative path")
		}
	}
	return nil
}

// CanonicalClusterObject decodes the JSON of a document as the Kubernetes client does
// (integers as int64, other numbers as float64) and returns the object and its canonical YAML:
// the object's JSON written as YAML by sigs.k8s.io/yaml.
func CanonicalClusterObject(j []byte) (map[string]any, []byte, error) {
	var obj map[string]any
	if err := utiljson.Unmarshal(j, &obj); err != nil || obj == nil {
		return nil, nil, errors.New("not a Kubernetes object (a mapping with apiVersion, kind and metadata.name)")
	}
	j2, err := json.Marshal(obj)
	if err != nil {
		return nil, nil, fmt.Errorf("encode: %v", err)
	}
	y, err := yaml.JSONToYAML(j2)
	if err != nil {
		return nil, nil, fmt.Errorf("encode: %v", err)
	}
	return obj, y, nil
}

// decodeClusterDocument decodes one document's YAML. The document must be in its canonical
// encoding: the object decoded and written back gives the document byte for byte, so the
// object applied is exactly the bytes signed, with one reading.
func decodeClusterDocument(body []byte) (map[string]any, error) {
	j, err := yaml.YAMLToJSON(body)
	if err != nil {
		return nil, fmt.Errorf("not valid YAML: %v", err)
	}
	m, canonical, err := CanonicalClusterObject(j)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(canonical, body) {
		return nil, errors.New("not in the canonical encoding mirror pack writes (pack the bundle with mirror)")
	}
	var missing []string
	for _, f := range [][]string{{"apiVersion"}, {"kind"}, {"metadata", "name"}} {
		v, found, err := nestedString(m, f...)
		if err != nil {
			return nil, fmt.Errorf("%s: want a string", strings.Join(f, "."))
		}
		if !found || v == "" {
			missing = append(missing, strings.Join(f, "."))
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("not a Kubernetes object: %s required", strings.Join(missing, ", "))
	}
	if _, _, err := nestedString(m, "metadata", "namespace"); err != nil {
		return nil, errors.New("metadata.namespace: want a string")
	}
	if av := m["apiVersion"].(string); strings.Count(av, "/") > 1 {
		// As k8s.io/apimachinery's schema.ParseGroupVersion says it.
		return nil, fmt.Errorf("apiVersion %q: unexpected GroupVersion string: %v", av, av)
	}
	return m, nil
}

// nestedString is unstructured.NestedString: the string at path, whether it was there, and an
// error when something on the way is not what the path needs.
func nestedString(m map[string]any, path ...string) (string, bool, error) {
	var v any = m
	for i, f := range path {
		mm, ok := v.(map[string]any)
		if !ok {
			return "", false, fmt.Errorf("%v accessor error: %v is of the type %T, expected map[string]interface{}", strings.Join(path[:i+1], "."), v, v)
		}
		if v, ok = mm[f]; !ok {
			return "", false, nil
		}
	}
	s, ok := v.(string)
	if !ok {
		return "", false, fmt.Errorf("%v accessor error: %v is of the type %T, expected string", strings.Join(path, "."), v, v)
	}
	return s, true, nil
}

// clusterObjectID is what makes two objects the same: group (not version), kind, namespace
// and name; and how messages name the object ("ConfigMap ns/x").
func clusterObjectID(o map[string]any) (id, name string) {
	av, _ := o["apiVersion"].(string)
	kind, _ := o["kind"].(string)
	ns, _, _ := nestedString(o, "metadata", "namespace")
	n, _, _ := nestedString(o, "metadata", "name")
	group := ""
	if g, _, ok := strings.Cut(av, "/"); ok {
		group = g
	}
	name = kind + " " + n
	if ns != "" {
		name = kind + " " + ns + "/" + n
	}
	return group + "\x00" + kind + "\x00" + ns + "\x00" + n, name
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
