package bundle

import (
	"regexp"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ArtifactType is the artifactType of a v1 bundle root.
const ArtifactType = "application/vnd.ferry.bundle.v1+json"

// RootRef is the name the layout index gives the root (its org.opencontainers.image.ref.name).
const RootRef = "bundle"

// Annotations of the root.
const (
	AnnotationSequence = "dev.ferry.bundle.sequence"
	AnnotationCreated  = ocispec.AnnotationCreated
	AnnotationExpires  = "dev.ferry.bundle.expires"
	AnnotationPrevious = "dev.ferry.bundle.previous"
	AnnotationBase     = "dev.ferry.bundle.base"
)

// Annotations of the root's entries.
const (
	AnnotationItemName        = "dev.ferry.item.name"
	AnnotationItemKind        = "dev.ferry.item.kind"
	AnnotationItemSource      = "dev.ferry.item.source"
	AnnotationItemRevision    = "dev.ferry.item.revision"
	AnnotationItemPlatforms   = "dev.ferry.item.platforms"
	AnnotationReferrerSubject = "dev.ferry.referrer.subject"
	AnnotationReferrerTag     = "dev.ferry.referrer.tag"
)

// Media types of manifests and indexes: the only blobs a reader parses.
const (
	MediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
)

// Kind says what an item is.
type Kind string

// The kinds of item.
const (
	KindImage    Kind = "image"
	KindChart    Kind = "chart"
	KindGit      Kind = "git"
	KindArtifact Kind = "artifact"
	// KindCluster is the bundle's own cluster objects (signed desired state, applied before
	// anything else); see cluster.go.
	KindCluster Kind = "cluster"
	// KindReferrer marks an entry that belongs to an item: an upstream signature,
	// attestation or SBOM of one of the item's manifests.
	KindReferrer Kind = "referrer"
)

func (k Kind) valid() bool {
	switch k {
	case KindImage, KindChart, KindGit, KindArtifact, KindCluster, KindReferrer:
		return true
	}
	return false
}

// Paths inside a layout: image-spec's names.
const (
	LayoutFile = ocispec.ImageLayoutFile
	IndexFile  = ocispec.ImageIndexFile
	blobsDir   = ocispec.ImageBlobsDir
	sha256Dir  = ocispec.ImageBlobsDir + "/sha256"
)

// LayoutFileContent is the only oci-layout file Ferry writes (image-spec's layout version
// 1.0.0) and the only one a reader accepts.
const LayoutFileContent = `{"imageLayoutVersion":"` + ocispec.ImageLayoutVersion + `"}`

var nameRE = regexp.MustCompile(`^[a-z0-9]+([._-][a-z0-9]+)*$`)

// ValidName reports whether name may name an item: a valid OCI tag and file name, not reserved.
func ValidName(name string) bool {
	return len(name) <= 128 && nameRE.MatchString(name) && name != RootRef && !strings.HasPrefix(name, "sha256-")
}

// isManifestType reports whether a blob of this media type is a manifest or index to parse.
func isManifestType(mt string) bool {
	switch mt {
	case ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageIndex, MediaTypeDockerManifest, MediaTypeDockerManifestList:
		return true
	}
	return false
}

func isIndexType(mt string) bool {
	return mt == ocispec.MediaTypeImageIndex || mt == MediaTypeDockerManifestList
}
