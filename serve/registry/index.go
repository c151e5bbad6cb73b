package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/cache"
)

// repository is what one repository serves.
type repository struct {
	tags      map[string]ocispec.Descriptor
	manifests map[digest.Digest]ocispec.Descriptor
	blobs     map[digest.Digest]ocispec.Descriptor
	referrers map[digest.Digest][]ocispec.Descriptor
}

// index is everything served, built from one accepted bundle; snap is that bundle's view of
// the cache, which requests answered from this index read.
type index struct {
	sequence uint64
	repos    map[string]*repository
	snap     *cache.Snapshot
}

// RepositoryName returns the repository an item is served as, and the tag it is served under:
// its upstream repository, host included ("registry.example/team/app"); a chart from an HTTP
// repository as host/path/chart; a Git source's Flux artifact as host/path of its URL without
// ".git". A port in a host becomes "-PORT" ("registry.example-5000/team/app"), since repository
// names cannot hold a colon.
func RepositoryName(it bundle.Item) (name, tag string) {
	name, tag = repositoryName(it)
	host, rest, _ := strings.Cut(name, "/")
	return strings.ReplaceAll(host, ":", "-") + "/" + rest, tag
}

func repositoryName(it bundle.Item) (name, tag string) {
	src := it.Source
	switch it.Kind {
	case bundle.KindImage, bundle.KindArtifact:
		if i := strings.Index(src, "@"); i >= 0 {
			return strings.ToLower(src[:i]), ""
		}
		if i := strings.LastIndex(src, ":"); i > strings.LastIndex(src, "/") {
			return strings.ToLower(src[:i]), src[i+1:]
		}
		return strings.ToLower(src), ""
	case bundle.KindChart:
		u, err := url.Parse(strings.TrimPrefix(src, "oci://"))
		if err == nil && u.Host != "" {
			return strings.ToLower(strings.Trim(u.Host+u.Path, "/")), it.Revision
		}
		return strings.ToLower(strings.TrimPrefix(src, "oci://")), strings.ReplaceAll(it.Revision, "+", "_")
	case bundle.KindGit:
		u, err := url.Parse(src)
		if err == nil && u.Host != "" {
			return strings.ToLower(strings.Trim(u.Host+strings.TrimSuffix(u.Path, ".git"), "/")), "latest"
		}
	}
	return "ferry/" + it.Name, "latest"
}

// build makes the index of the snapshot's bundle.
func build(ctx context.Context, c *cache.Snapshot) (*index, error) {
	rec := c.Record()
	idx := &index{repos: map[string]*repository{}, snap: c}
	if rec == nil {
		return idx, nil
	}
	idx.sequence = rec.Sequence
	rootDesc, err := c.Root()
	if err != nil {
		return nil, err
	}
	data, err := c.ReadAll(ctx, rootDesc, bundle.DefaultMaxManifestSize)
	if err != nil {
		return nil, fmt.Errorf("bundle %d root: %w", rec.Sequence, err)
	}
	b, err := bundle.ParseRoot(data)
	if err != nil {
		return nil, fmt.Errorf("bundle %d root: %w", rec.Sequence, err)
	}
	for _, it := range b.Items {
		name, tag := RepositoryName(it)
		r := idx.repos[name]
		if r == nil {
			r = &repository{tags: map[string]ocispec.Descriptor{}, manifests: map[digest.Digest]ocispec.Descriptor{},
				blobs: map[digest.Digest]ocispec.Descriptor{}, referrers: map[digest.Digest][]ocispec.Descriptor{}}
			idx.repos[name] = r
		}
		if err := r.add(ctx, c, it.Descriptor, it.Platforms); err != nil {
			return nil, fmt.Errorf("item %s: %w", it.Name, err)
		}
		if tag != "" {
			if it.Kind == bundle.KindGit {
				// The tag names the Flux artifact alone, as `flux push artifact` lays it out, so
				// an OCIRepository (or any OCI client) reads the tree; the root index, with the
				// Git pack beside it, stays reachable by digest.
				// A root index without a Flux artifact (none in the format requires one) keeps
				// the tag.
				if d, ok := gitFluxManifest(ctx, c, it); ok {
					r.tags[tag] = d
					continue
				}
			}
			r.tags[tag] = it.Descriptor
		}
		for _, ref := range it.Referrers {
			if err := r.add(ctx, c, ref.Descriptor, nil); err != nil {
				return nil, fmt.Errorf("item %s: referrer %s: %w", it.Name, ref.Descriptor.Digest, err)
			}
			if ref.Tag != "" {
				r.tags[ref.Tag] = ref.Descriptor
				continue
			}
			d, err := referrerDescriptor(ctx, c, ref.Descriptor)
			if err != nil {
				return nil, err
			}
			r.referrers[ref.Subject] = append(r.referrers[ref.Subject], d)
		}
	}
	return idx, nil
}

// gitFluxManifest returns the descriptor of a Git item's Flux artifact manifest, if its root
// index (already read whole and verified by add) names one.
func gitFluxManifest(ctx context.Context, c *cache.Snapshot, it bundle.Item) (ocispec.Descriptor, bool) {
	b, err := c.ReadAll(ctx, it.Descriptor, bundle.DefaultMaxManifestSize)
	if err != nil {
		return ocispec.Descriptor{}, false
	}
	var idx ocispec.Index
	if json.Unmarshal(b, &idx) != nil {
		return ocispec.Descriptor{}, false
	}
	_, flux := bundle.GitRoles(idx)
	if flux == nil {
		return ocispec.Descriptor{}, false
	}
	d := *flux
	d.Annotations = nil
	return d, true
}

// add records d and everything under it (for an image limited to platforms, only their children).
func (r *repository) add(ctx context.Context, c *cache.Snapshot, d ocispec.Descriptor, platforms []string) error {
	if !isManifest(d.MediaType) {
		r.blobs[d.Digest] = d
		return nil
	}
	if _, ok := r.manifests[d.Digest]; ok {
		return nil
	}
	r.manifests[d.Digest] = d
	children, err := content.Successors(ctx, c, d)
	if err != nil {
		return fmt.Errorf("manifest %s: %w", d.Digest, err)
	}
	for _, ch := range children {
		if ch.Digest == "" {
			continue
		}
		if isIndex(d.MediaType) && len(platforms) > 0 && !slices.Contains(platforms, bundle.PlatformString(ch.Platform)) {
			continue
		}
		if ch.Digest.Validate() != nil {
			continue
		}
		if isManifest(ch.MediaType) || ch.MediaType == "" {
			if held, _ := c.Exists(ctx, ch); !held {
				continue // a subject outside this repository, or not carried
			}
		}
		if err := r.add(ctx, c, ch, platforms); err != nil {
			return err
		}
	}
	return nil
}

// referrerDescriptor is how the referrers API lists a referrer: its artifact type (or config
// media type) and annotations.
func referrerDescriptor(ctx context.Context, c *cache.Snapshot, d ocispec.Descriptor) (ocispec.Descriptor, error) {
	b, err := content.FetchAll(ctx, c, d)
	if err != nil {
		return d, err
	}
	var m ocispec.Manifest
	if err := jsonUnmarshal(b, &m); err != nil {
		return d, err
	}
	out := ocispec.Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size, ArtifactType: m.ArtifactType, Annotations: m.Annotations}
	if out.ArtifactType == "" {
		out.ArtifactType = m.Config.MediaType
	}
	return out, nil
}

func (x *index) names() []string {
	out := make([]string, 0, len(x.repos))
	for n := range x.repos {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func isIndex(mt string) bool {
	return mt == ocispec.MediaTypeImageIndex || mt == bundle.MediaTypeDockerManifestList
}

func isManifest(mt string) bool {
	return isIndex(mt) || mt == ocispec.MediaTypeImageManifest || mt == bundle.MediaTypeDockerManifest
}
