package bundle

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Bundle is what a bundle's root says: its place in the sequence, its lifetime, its lineage
// and its items.
type Bundle struct {
	// Sequence increases with every bundle of one lineage; readers refuse one that does not.
	Sequence uint64
	// Created is when the bundle was packed; Expires is when readers start refusing it.
	Created, Expires time.Time
	// Previous is the root digest of the bundle packed before this one ("" for the first).
	Previous digest.Digest
	// Base is the root digest of the bundle this one is a delta against ("" for a full bundle).
	Base digest.Digest
	// Items, sorted by name once marshalled.
	Items []Item
}

// Item is one thing carried: an image, a chart, a Git source or another OCI artifact.
type Item struct {
	Name string
	Kind Kind
	// Source is where it came from, for people; sync never dials it.
	Source string
	// Revision is what the source resolved to: an image digest, a chart version, a commit.
	Revision string
	// Descriptor is the item's root: a manifest or an index.
	Descriptor ocispec.Descriptor
	// Referrers are upstream signatures, attestations and SBOMs of the item's manifests.
	Referrers []Referrer
	// Platforms, when set, are the only platforms carried of a multi-platform image: the index
	// is kept byte for byte, and only its children for these platforms are in the bundle.
	Platforms []string
}

// Referrer is a manifest that refers to one of an item's manifests.
type Referrer struct {
	Descriptor ocispec.Descriptor
	// Subject is the digest of the manifest it refers to.
	Subject digest.Digest
	// Tag is the upstream tag that carried it in the tag-based scheme (sha256-<hex>.sig), if any.
	Tag string
}

// Item returns the item named name, or nil.
func (b *Bundle) Item(name string) *Item {
	for i := range b.Items {
		if b.Items[i].Name == name {
			return &b.Items[i]
		}
	}
	return nil
}

// Validate checks b against the format: names, kinds, descriptors, times.
func (b *Bundle) Validate() error {
	_, err := b.index()
	return err
}

// Marshal returns the root: an OCI image index whose bytes are a function of b alone.
func (b *Bundle) Marshal() ([]byte, error) {
	idx, err := b.index()
	if err != nil {
		return nil, err
	}
	return json.Marshal(idx)
}

// Descriptor marshals the root and returns its descriptor and bytes.
func (b *Bundle) Descriptor() (ocispec.Descriptor, []byte, error) {
	data, err := b.Marshal()
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	return ocispec.Descriptor{
		MediaType:    ocispec.MediaTypeImageIndex,
		ArtifactType: ArtifactType,
		Digest:       digestOf(data),
		Size:         int64(len(data)),
	}, data, nil
}

func invalid(format string, args ...any) *Error {
	return errorf(ItemRoot, "", CheckFormat, fixRepack, format, args...)
}

func (b *Bundle) index() (*ocispec.Index, error) {
	if b.Sequence == 0 {
		return nil, invalid("sequence must be at least 1")
	}
	if b.Created.IsZero() || b.Expires.IsZero() {
		return nil, invalid("created and expires times are required")
	}
	created, expires := b.Created.UTC().Truncate(time.Second), b.Expires.UTC().Truncate(time.Second)
	if !expires.After(created) {
		return nil, invalid("expires %s is not after created %s", expires.Format(time.RFC3339), created.Format(time.RFC3339))
	}
	ann := map[string]string{
		AnnotationSequence: strconv.FormatUint(b.Sequence, 10),
		AnnotationCreated:  created.Format(time.RFC3339),
		AnnotationExpires:  expires.Format(time.RFC3339),
	}
	for key, d := range map[string]digest.Digest{AnnotationPrevious: b.Previous, AnnotationBase: b.Base} {
		if d == "" {
			continue
		}
		if !validDigest(d) {
			return nil, invalid("%s %q is not a sha256 digest", key, d)
		}
		ann[key] = string(d)
	}
	items := slices.Clone(b.Items)
	slices.SortFunc(items, func(x, y Item) int { return strings.Compare(x.Name, y.Name) })
	var entries []ocispec.Descriptor
	for i, it := range items {
		if i > 0 && items[i-1].Name == it.Name {
			return nil, invalid("two items are named %q", it.Name)
		}
		if !ValidName(it.Name) {
			return nil, invalid("item name %q: use lowercase letters, digits and . _ - (at most 128), not %q or sha256-…", it.Name, RootRef)
		}
		if !it.Kind.valid() || it.Kind == KindReferrer {
			return nil, invalid("item %s: kind %q is not image, chart, git, artifact or cluster", it.Name, it.Kind)
		}
		d, err := entryDescriptor(it.Name, it.Descriptor)
		if err != nil {
			return nil, err
		}
		d.Annotations = map[string]string{
			AnnotationItemName:     it.Name,
			AnnotationItemKind:     string(it.Kind),
			AnnotationItemSource:   it.Source,
			AnnotationItemRevision: it.Revision,
		}
		if len(it.Platforms) > 0 {
			ps := slices.Clone(it.Platforms)
			slices.Sort(ps)
			for j, p := range ps {
				if !validPlatform(p) || (j > 0 && ps[j-1] == p) {
					return nil, invalid("item %s: platform %q: want os/arch or os/arch/variant, each once", it.Name, p)
				}
			}
			d.Annotations[AnnotationItemPlatforms] = strings.Join(ps, ",")
		}
		entries = append(entries, d)
		refs := slices.Clone(it.Referrers)
		slices.SortFunc(refs, func(x, y Referrer) int {
			return strings.Compare(string(x.Descriptor.Digest), string(y.Descriptor.Digest))
		})
		for j, r := range refs {
			if j > 0 && refs[j-1].Descriptor.Digest == r.Descriptor.Digest {
				return nil, invalid("item %s: referrer %s listed twice", it.Name, r.Descriptor.Digest)
			}
			rd, err := entryDescriptor(it.Name, r.Descriptor)
			if err != nil {
				return nil, err
			}
			if !validDigest(r.Subject) {
				return nil, invalid("item %s: referrer %s: subject %q is not a sha256 digest", it.Name, r.Descriptor.Digest, r.Subject)
			}
			rd.Annotations = map[string]string{
				AnnotationItemName:        it.Name,
				AnnotationItemKind:        string(KindReferrer),
				AnnotationReferrerSubject: string(r.Subject),
			}
			if r.Tag != "" {
				rd.Annotations[AnnotationReferrerTag] = r.Tag
			}
			entries = append(entries, rd)
		}
	}
	if entries == nil {
		entries = []ocispec.Descriptor{}
	}
	return &ocispec.Index{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageIndex,
		ArtifactType: ArtifactType,
		Manifests:    entries,
		Annotations:  ann,
	}, nil
}

// entryDescriptor returns the plain descriptor of an entry: media type, digest, size, and the
// platform of index children, nothing else.
func entryDescriptor(item string, d ocispec.Descriptor) (ocispec.Descriptor, error) {
	if !isManifestType(d.MediaType) {
		return ocispec.Descriptor{}, invalid("item %s: %s has media type %q, not a manifest or index", item, d.Digest, d.MediaType)
	}
	if !validDigest(d.Digest) {
		return ocispec.Descriptor{}, invalid("item %s: %q is not a sha256 digest", item, d.Digest)
	}
	if d.Size <= 0 {
		return ocispec.Descriptor{}, invalid("item %s: %s has size %d", item, d.Digest, d.Size)
	}
	return ocispec.Descriptor{MediaType: d.MediaType, ArtifactType: d.ArtifactType, Digest: d.Digest, Size: d.Size, Platform: d.Platform}, nil
}

// ParseRoot parses a root's bytes strictly: unknown fields, unknown dev.ferry annotations, an
// entry out of order or anything Marshal would not have written is an error.
func ParseRoot(data []byte) (*Bundle, error) {
	var idx ocispec.Index
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&idx); err != nil {
		return nil, invalid("not a bundle root: %v", err)
	}
	if dec.More() {
		return nil, invalid("trailing data after the root")
	}
	if idx.SchemaVersion != 2 || idx.MediaType != ocispec.MediaTypeImageIndex {
		return nil, invalid("schemaVersion %d, mediaType %q: want 2 and %s", idx.SchemaVersion, idx.MediaType, ocispec.MediaTypeImageIndex)
	}
	if idx.ArtifactType != ArtifactType {
		return nil, invalid("artifactType %q: want %s (a newer format needs a newer sync)", idx.ArtifactType, ArtifactType)
	}
	if idx.Subject != nil {
		return nil, invalid("a root has no subject")
	}
	b := &Bundle{}
	for k := range idx.Annotations {
		switch k {
		case AnnotationSequence, AnnotationCreated, AnnotationExpires, AnnotationPrevious, AnnotationBase:
		default:
			if strings.HasPrefix(k, "dev.ferry.") {
				return nil, invalid("unknown annotation %q (a newer format needs a newer sync)", k)
			}
		}
	}
	seq := idx.Annotations[AnnotationSequence]
	n, err := strconv.ParseUint(seq, 10, 64)
	if err != nil || n == 0 || strconv.FormatUint(n, 10) != seq {
		return nil, invalid("sequence %q is not a whole number from 1", seq)
	}
	b.Sequence = n
	for key, t := range map[string]*time.Time{AnnotationCreated: &b.Created, AnnotationExpires: &b.Expires} {
		v := idx.Annotations[key]
		parsed, err := time.Parse(time.RFC3339, v)
		if err != nil || !strings.HasSuffix(v, "Z") || parsed.Format(time.RFC3339) != v {
			return nil, invalid("%s %q is not an RFC 3339 time in UTC", key, v)
		}
		*t = parsed
	}
	for key, d := range map[string]*digest.Digest{AnnotationPrevious: &b.Previous, AnnotationBase: &b.Base} {
		if v, ok := idx.Annotations[key]; ok {
			if !validDigest(digest.Digest(v)) {
				return nil, invalid("%s %q is not a sha256 digest", key, v)
			}
			*d = digest.Digest(v)
		}
	}
	for i, e := range idx.Manifests {
		name, kind := e.Annotations[AnnotationItemName], Kind(e.Annotations[AnnotationItemKind])
		if !kind.valid() {
			return nil, invalid("entry %d (%s): kind %q is not image, chart, git, artifact, cluster or referrer", i, e.Digest, kind)
		}
		for k := range e.Annotations {
			switch k {
			case AnnotationItemName, AnnotationItemKind, AnnotationItemSource, AnnotationItemRevision, AnnotationItemPlatforms, AnnotationReferrerSubject, AnnotationReferrerTag:
			default:
				if strings.HasPrefix(k, "dev.ferry.") {
					return nil, invalid("entry %d (%s): unknown annotation %q", i, e.Digest, k)
				}
			}
		}
		if kind == KindReferrer {
			if len(b.Items) == 0 || b.Items[len(b.Items)-1].Name != name {
				return nil, invalid("entry %d: referrer %s of item %q does not follow that item", i, e.Digest, name)
			}
			it := &b.Items[len(b.Items)-1]
			it.Referrers = append(it.Referrers, Referrer{
				Descriptor: e, Subject: digest.Digest(e.Annotations[AnnotationReferrerSubject]), Tag: e.Annotations[AnnotationReferrerTag],
			})
			continue
		}
		it := Item{
			Name: name, Kind: kind, Descriptor: e,
			Source: e.Annotations[AnnotationItemSource], Revision: e.Annotations[AnnotationItemRevision],
		}
		if ps, ok := e.Annotations[AnnotationItemPlatforms]; ok {
			it.Platforms = strings.Split(ps, ",")
		}
		b.Items = append(b.Items, it)
	}
	// One bundle, one encoding: the bytes must be exactly what Marshal writes for what was read.
	again, err := b.Marshal()
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(again, data) {
		return nil, invalid("not in canonical form (entries out of order, extra fields or annotations, or other spacing)")
	}
	for i := range b.Items {
		b.Items[i].Descriptor = plain(b.Items[i].Descriptor)
		for j := range b.Items[i].Referrers {
			b.Items[i].Referrers[j].Descriptor = plain(b.Items[i].Referrers[j].Descriptor)
		}
	}
	return b, nil
}

// plain drops a root entry's annotations, leaving the descriptor of the item's manifest.
func plain(d ocispec.Descriptor) ocispec.Descriptor {
	d.Annotations = nil
	return d
}

// String summarises the bundle on one line.
func (b *Bundle) String() string {
	return fmt.Sprintf("bundle %d (%d items, created %s, expires %s)", b.Sequence, len(b.Items), b.Created.Format(time.RFC3339), b.Expires.Format(time.RFC3339))
}

// validPlatform reports whether p is os/arch or os/arch/variant, each part a plain word.
func validPlatform(p string) bool {
	parts := strings.Split(p, "/")
	if len(parts) < 2 || len(parts) > 3 {
		return false
	}
	for _, x := range parts {
		if x == "" || strings.ContainsAny(x, ", ") {
			return false
		}
	}
	return true
}

// PlatformString returns a descriptor's platform as os/arch[/variant], or "" when it has none.
func PlatformString(p *ocispec.Platform) string {
	if p == nil || p.OS == "" || p.Architecture == "" {
		return ""
	}
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// Carries reports whether the item holds an index child of platform p: an image item restricted
// to some platforms (Platforms) carries only those children of its indexes, the rest are named
// by the index but absent from the bundle.
func (it Item) Carries(p *ocispec.Platform) bool { return carries(it.Platforms, p) }

// carries reports whether an item restricted to platforms carries an index child of platform p.
func carries(platforms []string, p *ocispec.Platform) bool {
	if len(platforms) == 0 {
		return true
	}
	return slices.Contains(platforms, PlatformString(p))
}
