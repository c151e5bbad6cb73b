package fetch

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/spec"
)

// The Git item format lives in the bundle package, which both halves of Ferry share; these
// names keep fetch's API.
const (
	GitArtifactType         = bundle.GitArtifactType
	GitPackMediaType        = bundle.GitPackMediaType
	GitConfigMediaType      = bundle.GitConfigMediaType
	GitFluxConfigMediaType  = bundle.GitFluxConfigMediaType
	GitFluxContentMediaType = bundle.GitFluxContentMediaType
	GitRoleAnnotation       = bundle.GitRoleAnnotation
	GitRolePack             = bundle.GitRolePack
	GitRoleFlux             = bundle.GitRoleFlux
)

// GitConfig is the config blob of a Git item's pack manifest.
type GitConfig = bundle.GitConfig

// Git fetches a Git source: it resolves src.Ref, pushes the history of the commit as a packfile
// and its tree as a Flux artifact into dst, and returns the item whose root index lists both.
func Git(ctx context.Context, dst Store, src spec.Git, o *Options) (bundle.Item, error) {
	s := &gitSource{Git: src, log: o.logger(), maxFetch: GitMaxFetchSize}
	if o != nil && o.GitMaxFetchSize > 0 {
		s.maxFetch = o.GitMaxFetchSize
	}
	if err := s.setURL(o); err != nil {
		return bundle.Item{}, err
	}
	defer s.close()
	if err := s.clone(ctx); err != nil {
		return bundle.Item{}, err
	}
	attrs := []any{"name", src.Name, "url", s.redacted, "ref", gitRefString(src.Ref), "resolvedRef", s.resolvedRef, "commit", s.commit.Hash.String()}
	if s.mirror != "" {
		attrs = append(attrs, "mirror", s.mirror)
	}
	s.log.Info("resolved git source", attrs...)

	pack, err := s.pushPack(ctx, dst)
	if err != nil {
		return bundle.Item{}, err
	}
	flux, err := s.pushFlux(ctx, dst)
	if err != nil {
		return bundle.Item{}, err
	}
	root, err := gitPushJSON(ctx, dst, ocispec.MediaTypeImageIndex, bundle.GitIndex(pack, flux))
	if err != nil {
		return bundle.Item{}, s.errorf("push root index: %w", err)
	}
	root.ArtifactType = GitArtifactType
	return bundle.Item{
		Name:       src.Name,
		Kind:       bundle.KindGit,
		Source:     s.redacted,
		Revision:   s.commit.Hash.String(),
		Descriptor: root,
	}, nil
}

// pushPack pushes the packfile, its config and the manifest holding them; it returns the manifest's descriptor.
func (s *gitSource) pushPack(ctx context.Context, dst Store) (ocispec.Descriptor, error) {
	pack, err := s.encodePack(ctx)
	if err != nil {
		return ocispec.Descriptor{}, s.errorf("encode packfile of %s: %w", s.commit.Hash, err)
	}
	cfg, err := gitMarshal(GitConfig{URL: s.redacted, Ref: s.Ref, ResolvedRef: s.resolvedRef, Commit: s.commit.Hash.String()})
	if err != nil {
		return ocispec.Descriptor{}, s.errorf("marshal config: %w", err)
	}
	cfgDesc, err := gitPushBlob(ctx, dst, GitConfigMediaType, cfg)
	if err != nil {
		return ocispec.Descriptor{}, s.errorf("push config: %w", err)
	}
	packDesc, err := gitPushBlob(ctx, dst, GitPackMediaType, pack)
	if err != nil {
		return ocispec.Descriptor{}, s.errorf("push packfile: %w", err)
	}
	m, err := gitPushJSON(ctx, dst, ocispec.MediaTypeImageManifest, bundle.GitPackManifest(cfgDesc, packDesc))
	if err != nil {
		return ocispec.Descriptor{}, s.errorf("push pack manifest: %w", err)
	}
	m.ArtifactType = GitArtifactType
	return m, nil
}

// pushFlux pushes the tree as a Flux artifact, the way `flux push artifact` lays it out, and
// returns the manifest's descriptor.
func (s *gitSource) pushFlux(ctx context.Context, dst Store) (ocispec.Descriptor, error) {
	tgz, err := s.treeArchive(ctx)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	cfgDesc, err := gitPushBlob(ctx, dst, GitFluxConfigMediaType, []byte("{}"))
	if err != nil {
		return ocispec.Descriptor{}, s.errorf("push flux config: %w", err)
	}
	layer, err := gitPushBlob(ctx, dst, GitFluxContentMediaType, tgz)
	if err != nil {
		return ocispec.Descriptor{}, s.errorf("push flux content: %w", err)
	}
	revision := "sha1:" + s.commit.Hash.String()
	if short := gitShortRef(s.resolvedRef); short != "" {
		revision = short + "@" + revision
	}
	m, err := gitPushJSON(ctx, dst, ocispec.MediaTypeImageManifest, ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    cfgDesc,
		Layers:    []ocispec.Descriptor{layer},
		Annotations: map[string]string{
			ocispec.AnnotationSource:   s.redacted,
			ocispec.AnnotationRevision: revision,
			ocispec.AnnotationCreated:  s.commit.Committer.When.UTC().Format(time.RFC3339),
		},
	})
	if err != nil {
		return ocispec.Descriptor{}, s.errorf("push flux manifest: %w", err)
	}
	return m, nil
}

// gitShortRef returns a branch's or tag's name from its full ref name ("" for "").
func gitShortRef(full string) string {
	if name, ok := strings.CutPrefix(full, "refs/heads/"); ok {
		return name
	}
	if name, ok := strings.CutPrefix(full, "refs/tags/"); ok {
		return name
	}
	return full
}

// gitRefString describes a spec ref for logs and errors: `branch "main"`.
func gitRefString(r spec.GitRef) string {
	switch {
	case r.Branch != "":
		return fmt.Sprintf("branch %q", r.Branch)
	case r.Tag != "":
		return fmt.Sprintf("tag %q", r.Tag)
	case r.SemVer != "":
		return fmt.Sprintf("semver %q", r.SemVer)
	case r.Commit != "":
		return fmt.Sprintf("commit %s", r.Commit)
	}
	return "no ref"
}

// gitMarshal encodes v as compact JSON without HTML escaping (so ">=1.0.0" stays readable).
func gitMarshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// gitPushJSON marshals a manifest or index with encoding/json and pushes it.
func gitPushJSON(ctx context.Context, dst Store, mediaType string, v any) (ocispec.Descriptor, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	return gitPushBlob(ctx, dst, mediaType, data)
}

// gitPushBlob pushes data unless dst holds it already, and returns its descriptor.
func gitPushBlob(ctx context.Context, dst Store, mediaType string, data []byte) (ocispec.Descriptor, error) {
	d := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}
	ok, err := dst.Exists(ctx, d)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("%s: %w", d.Digest, err)
	}
	if ok {
		return d, nil
	}
	if err := dst.Push(ctx, d, bytes.NewReader(data)); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("%s: %w", d.Digest, err)
	}
	return d, nil
}
