package bundle

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Write finishes a bundle in l, whose blobs (every item's graph and the attachments' graphs)
// have been pushed: it pushes b's root, writes index.json (attachments, root, items), and then
// reads the whole layout back to prove it complete (a delta needs WithHave for what its base
// holds). It returns the root's descriptor.
func Write(ctx context.Context, l *Layout, b *Bundle, attachments []ocispec.Descriptor, opts ...ReadOption) (ocispec.Descriptor, error) {
	res, err := WriteResult(ctx, l, b, attachments, opts...)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	return res.Root, nil
}

// WriteResult is Write returning what the read-back found (blob count and bytes).
func WriteResult(ctx context.Context, l *Layout, b *Bundle, attachments []ocispec.Descriptor, opts ...ReadOption) (*Result, error) {
	root, data, err := b.Descriptor()
	if err != nil {
		return nil, err
	}
	if err := l.Push(ctx, root, bytes.NewReader(data)); err != nil {
		return nil, fmt.Errorf("push root: %w", err)
	}
	index, err := LayoutIndex(root, b, attachments)
	if err != nil {
		return nil, err
	}
	if err := l.WriteIndex(index); err != nil {
		return nil, fmt.Errorf("write index.json: %w", err)
	}
	res, err := ReadLayout(ctx, l.dir, opts...)
	if err != nil {
		return nil, fmt.Errorf("bundle written to %s is not complete: %w", l.dir, err)
	}
	return res, nil
}

// LayoutIndex returns the index.json of a bundle: attachments sorted by digest, the root named
// "bundle", then each item's root named by the item's name.
func LayoutIndex(root ocispec.Descriptor, b *Bundle, attachments []ocispec.Descriptor) ([]byte, error) {
	att := slices.Clone(attachments)
	slices.SortFunc(att, func(x, y ocispec.Descriptor) int { return strings.Compare(string(x.Digest), string(y.Digest)) })
	if len(att) > DefaultMaxAttachments {
		return nil, fmt.Errorf("%d attachments: at most %d", len(att), DefaultMaxAttachments)
	}
	manifests := make([]ocispec.Descriptor, 0, len(att)+1+len(b.Items))
	for _, a := range att {
		d, err := entryDescriptor(ItemAttachment, a)
		if err != nil {
			return nil, err
		}
		if tag := a.Annotations[ocispec.AnnotationRefName]; tag != "" {
			d.Annotations = map[string]string{ocispec.AnnotationRefName: tag}
		}
		manifests = append(manifests, d)
	}
	r := root
	r.Annotations = map[string]string{ocispec.AnnotationRefName: RootRef}
	manifests = append(manifests, r)
	items := slices.Clone(b.Items)
	slices.SortFunc(items, func(x, y Item) int { return strings.Compare(x.Name, y.Name) })
	for _, it := range items {
		d, err := entryDescriptor(it.Name, it.Descriptor)
		if err != nil {
			return nil, err
		}
		d.Annotations = map[string]string{ocispec.AnnotationRefName: it.Name}
		manifests = append(manifests, d)
	}
	return json.Marshal(ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: manifests,
	})
}
