package bundle

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
