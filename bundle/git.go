package bundle

import (
	"fmt"

	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// The Git item format, shared by the side that writes it (fetch) and the sides that read it
// (serve, reconcile); docs/git-artifacts.md describes it.
const (
	// GitArtifactType is the artifactType of a Git item's root index and of its pack manifest.
	GitArtifactType = "application/vnd.ferry.git.v1"
	// GitPackMediaType is the media type of the packfile layer.
	GitPackMediaType = "application/vnd.ferry.git.pack.v1"
	// GitConfigMediaType is the media type of the pack manifest's config, a GitConfig.
	GitConfigMediaType = "application/vnd.ferry.git.config.v1+json"
	// GitFluxConfigMediaType is the config media type of the Flux artifact of the tree.
	GitFluxConfigMediaType = "application/vnd.cncf.flux.config.v1+json"
	// GitFluxContentMediaType is the layer media type of the Flux artifact: the tree as a tar.gz.
	GitFluxContentMediaType = "application/vnd.cncf.flux.content.v1.tar+gzip"
	// GitRoleAnnotation says what each manifest of a Git item's root index is: GitRolePack or GitRoleFlux.
	GitRoleAnnotation = "dev.ferry.git.role"
	// GitRolePack marks the manifest that carries the packfile.
	GitRolePack = "pack"
	// GitRoleFlux marks the Flux artifact of the tree.
	GitRoleFlux = "flux"
)

// GitRef says which commit a Git source carries: exactly one field is set.
type GitRef struct {
	Branch string `json:"branch,omitempty"`
	Tag    string `json:"tag,omitempty"`
	// SemVer picks the highest tag matching the range (">=1.2.0 <2").
	SemVer string `json:"semver,omitempty"`
	Commit string `json:"commit,omitempty"`
}

// GitConfig is the config blob of a Git item's pack manifest.
type GitConfig struct {
	// URL is the source's URL without credentials.
	URL string `json:"url"`
	// Ref is the ref as the spec gives it.
	Ref GitRef `json:"ref"`
	// ResolvedRef is the full ref name the commit was found at; "" for a commit ref.
	ResolvedRef string `json:"resolvedRef"`
	// Commit is the resolved commit's hash in hex.
	Commit string `json:"commit"`
}

// GitIndex returns a Git item's root index over its pack manifest and the Flux artifact of its
// tree, each annotated with its role.
func GitIndex(pack, flux ocispec.Descriptor) ocispec.Index {
	pack.Annotations = map[string]string{GitRoleAnnotation: GitRolePack}
	flux.Annotations = map[string]string{GitRoleAnnotation: GitRoleFlux}
	return ocispec.Index{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageIndex,
		ArtifactType: GitArtifactType,
		Manifests:    []ocispec.Descriptor{pack, flux},
	}
}

// GitPackManifest returns the pack manifest of a Git item: its config (a GitConfig of media
// type GitConfigMediaType) and its one layer, the packfile.
func GitPackManifest(config, pack ocispec.Descriptor) ocispec.Manifest {
	return ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: GitArtifactType,
		Config:       config,
		Layers:       []ocispec.Descriptor{pack},
	}
}

// GitRoles returns the manifests of a Git item's root index by role, the first of each; nil
// where the index has none.
func GitRoles(idx ocispec.Index) (pack, flux *ocispec.Descriptor) {
	for i := range idx.Manifests {
		switch idx.Manifests[i].Annotations[GitRoleAnnotation] {
		case GitRolePack:
			if pack == nil {
				pack = &idx.Manifests[i]
			}
		case GitRoleFlux:
			if flux == nil {
				flux = &idx.Manifests[i]
			}
		}
	}
	return pack, flux
}

// GitPackLayer checks a Git item's pack manifest and returns its packfile layer.
func GitPackLayer(m ocispec.Manifest) (ocispec.Descriptor, error) {
	if m.Config.MediaType != GitConfigMediaType {
		return ocispec.Descriptor{}, fmt.Errorf("config media type %q, want %q", m.Config.MediaType, GitConfigMediaType)
	}
	if len(m.Layers) != 1 || m.Layers[0].MediaType != GitPackMediaType {
		return ocispec.Descriptor{}, fmt.Errorf("want one layer of media type %q", GitPackMediaType)
	}
	return m.Layers[0], nil
}

// GitFluxLayer checks the Flux artifact manifest of a Git item and returns its one layer, the
// tree as a tar.gz.
func GitFluxLayer(m ocispec.Manifest) (ocispec.Descriptor, error) {
	if len(m.Layers) != 1 || m.Layers[0].MediaType != GitFluxContentMediaType {
		return ocispec.Descriptor{}, fmt.Errorf("flux manifest must have one layer of type %s", GitFluxContentMediaType)
	}
	return m.Layers[0], nil
}
