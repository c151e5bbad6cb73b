package fetch

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/Masterminds/semver/v3"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/spec"
)

// Suffixes of the tags cosign's tag-based scheme attaches to sha256-<hex> of a manifest.
var cosignTagSuffixes = []string{".sig", ".att", ".sbom"}

// Image resolves an image (by tag, digest or semver tag policy) and copies it byte for byte
// into dst: its manifest or index, the children for the platforms asked for, their configs and
// layers, and, unless the spec turns them off, every signature, attestation and SBOM attached
// to those manifests, in cosign's tag-based form and as OCI referrers.
func Image(ctx context.Context, dst Store, src spec.Image, o *Options) (bundle.Item, error) {
	// What is dialled may be a mirror (o.Upstreams); what the item records is src.Image.
	dial, _ := o.rewrite(src.Image)
	via := viaMirror(src.Image, dial)
	fail := func(format string, args ...any) (bundle.Item, error) {
		return bundle.Item{}, fmt.Errorf("image %s (%s%s): %s", src.Name, src.Image, via, fmt.Sprintf(format, args...))
	}
	repo, err := repository(src.Image, o)
	if err != nil {
		return fail("%v", err)
	}
	ref, err := resolveImageRef(ctx, repo, src)
	if err != nil {
		return fail("%v", err)
	}
	root, err := repo.Resolve(ctx, ref)
	if err != nil {
		return fail("resolve %s: %v", ref, err)
	}
	if src.Digest != "" && root.Digest != digest.Digest(src.Digest) {
		return fail("registry answered %s for digest %s", root.Digest, src.Digest)
	}
	source := src.Image + ":" + ref
	if strings.HasPrefix(ref, "sha256:") {
		source = src.Image + "@" + ref
	}

	// Copy the image, keeping only the platforms asked for, every descriptor checked against
	// the bundle's limits before its content is read.
	b := newBudget("image "+src.Name, o)
	opts := oras.CopyGraphOptions{
		Concurrency: 4,
		FindSuccessors: b.successors(func(ctx context.Context, f content.Fetcher, d ocispec.Descriptor) ([]ocispec.Descriptor, error) {
			return carried(ctx, f, d, src.Platforms)
		}),
	}
	if err := oras.CopyGraph(ctx, repo, dst, root, opts); err != nil {
		return fail("copy %s: %v", source, err)
	}
	// Every manifest carried may have signatures of its own.
	manifests, err := manifestsOf(ctx, dst, root, src.Platforms)
	if err != nil {
		return fail("walk %s: %v", source, err)
	}
	item := bundle.Item{
		Name: src.Name, Kind: bundle.KindImage, Source: source, Revision: string(root.Digest),
		Descriptor: plainDescriptor(root), Platforms: src.Platforms,
	}
	if isIndex(root.MediaType) && len(src.Platforms) > 0 && len(manifests) == 1 {
		return fail("no child of %s is for platforms %s", source, strings.Join(src.Platforms, ", "))
	}
	if src.WantSignatures() {
		refs, err := copyReferrers(ctx, repo, dst, manifests, b)
		if err != nil {
			return fail("%v", err)
		}
		item.Referrers = refs
	}
	attrs := []any{"name", src.Name, "source", source, "digest", root.Digest,
		"manifests", len(manifests), "referrers", len(item.Referrers)}
	if via != "" {
		attrs = append(attrs, "mirror", dial)
	}
	o.logger().Info("image resolved", attrs...)
	return item, nil
}

// carried returns the children of d that a bundle carries: all of them, except that an index
// of an image restricted to platforms keeps only the children for those platforms.
func carried(ctx context.Context, f content.Fetcher, d ocispec.Descriptor, platforms []string) ([]ocispec.Descriptor, error) {
	children, err := content.Successors(ctx, f, d)
	if err != nil {
		return nil, err
	}
	if isIndex(d.MediaType) && len(platforms) > 0 {
		children = slices.DeleteFunc(children, func(c ocispec.Descriptor) bool {
			return !slices.Contains(platforms, bundle.PlatformString(c.Platform))
		})
	}
	return children, nil
}

// manifestsOf lists root and every manifest and index carried under it, in walk order.
func manifestsOf(ctx context.Context, f content.Fetcher, root ocispec.Descriptor, platforms []string) ([]ocispec.Descriptor, error) {
	out := []ocispec.Descriptor{plainDescriptor(root)}
	for i := 0; i < len(out); i++ {
		if !isIndex(out[i].MediaType) {
			continue
		}
		children, err := carried(ctx, f, out[i], platforms)
		if err != nil {
			return nil, err
		}
		for _, c := range children {
			if isManifest(c.MediaType) && !slices.ContainsFunc(out, func(d ocispec.Descriptor) bool { return d.Digest == c.Digest }) {
				out = append(out, plainDescriptor(c))
			}
		}
	}
	return out, nil
}

// resolveImageRef returns the tag or digest to pull: as given, or the highest tag in range.
func resolveImageRef(ctx context.Context, repo *remote.Repository, src spec.Image) (string, error) {
	switch {
	case src.Digest != "":
		return src.Digest, nil
	case src.Tag != "":
		return src.Tag, nil
	}
	c, err := semver.NewConstraint(src.SemVer)
	if err != nil {
		return "", fmt.Errorf("semver %q: %w", src.SemVer, err)
	}
	var best *semver.Version
	bestTag, seen := "", 0
	err = listTags(ctx, repo, func(tags []string) {
		for _, t := range tags {
			v, err := semver.NewVersion(t)
			if err != nil {
				continue
			}
			seen++
			if c.Check(v) && (best == nil || v.GreaterThan(best)) {
				best, bestTag = v, t
			}
		}
	})
	if err != nil {
		return "", fmt.Errorf("list tags: %w", err)
	}
	if best == nil {
		return "", fmt.Errorf("no tag matches semver %q (%d semver tags seen)", src.SemVer, seen)
	}
	return bestTag, nil
}

// copyReferrers copies every signature, attestation and SBOM of the given manifests: the
// tag-based cosign forms (sha256-<hex>.sig, .att, .sbom) and OCI referrers (the referrers API,
// or its tag fallback on registries without it).
func copyReferrers(ctx context.Context, repo *remote.Repository, dst Store, manifests []ocispec.Descriptor, b *budget) ([]bundle.Referrer, error) {
	opts := oras.CopyGraphOptions{Concurrency: 4, FindSuccessors: b.successors(content.Successors)}
	var out []bundle.Referrer
	seen := map[digest.Digest]bool{}
	add := func(r bundle.Referrer) error {
		if seen[r.Descriptor.Digest] {
			return nil
		}
		if !isManifest(r.Descriptor.MediaType) {
			return nil // a referrer that is not a manifest cannot be carried as one
		}
		seen[r.Descriptor.Digest] = true
		if err := oras.CopyGraph(ctx, repo, dst, r.Descriptor, opts); err != nil {
			return fmt.Errorf("copy %s of %s: %w", r.Descriptor.Digest, r.Subject, err)
		}
		out = append(out, r)
		return nil
	}
	for _, m := range manifests {
		for _, suffix := range cosignTagSuffixes {
			tag := "sha256-" + m.Digest.Encoded() + suffix
			d, err := repo.Resolve(ctx, tag)
			if errors.Is(err, errdef.ErrNotFound) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("look up %s: %w", tag, err)
			}
			if err := add(bundle.Referrer{Descriptor: plainDescriptor(d), Subject: m.Digest, Tag: tag}); err != nil {
				return nil, err
			}
		}
		var found []ocispec.Descriptor
		err := repo.Referrers(ctx, m, "", func(rs []ocispec.Descriptor) error {
			if found = append(found, rs...); len(found) > maxReferrers {
				return fmt.Errorf("more than %d referrers (listing limit); the upstream is refused", maxReferrers)
			}
			return nil
		})
		if err != nil && !errors.Is(err, errdef.ErrNotFound) {
			return nil, fmt.Errorf("list referrers of %s: %w", m.Digest, pageLimitHint(err))
		}
		for _, r := range found {
			if err := add(bundle.Referrer{Descriptor: plainDescriptor(r), Subject: m.Digest}); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

func plainDescriptor(d ocispec.Descriptor) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: d.MediaType, ArtifactType: d.ArtifactType, Digest: d.Digest, Size: d.Size, Platform: d.Platform}
}

func isIndex(mt string) bool {
	return mt == ocispec.MediaTypeImageIndex || mt == bundle.MediaTypeDockerManifestList
}

func isManifest(mt string) bool {
	return isIndex(mt) || mt == ocispec.MediaTypeImageManifest || mt == bundle.MediaTypeDockerManifest
}
