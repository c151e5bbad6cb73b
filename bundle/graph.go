package bundle

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Entry is one file of a bundle as a reader meets it.
type Entry struct {
	// Path is the file's path in the layout: "oci-layout", "index.json" or "blobs/sha256/<hex>".
	Path string
	// Descriptor describes the file's bytes (for oci-layout and index.json, as read).
	Descriptor ocispec.Descriptor
	// Item is the item the blob belongs to, or a pseudo-item: ItemRoot, ItemAttachment, ItemIndex, ItemLayout.
	Item string
}

// Visitor is called for every file of a bundle, in stream order. r yields exactly the file's
// bytes and returns io.EOF only after they hashed to the descriptor's digest: a visitor that
// copies until io.EOF has copied verified bytes, and any other error means it must discard them.
type Visitor func(ctx context.Context, e Entry, r io.Reader) error

// HaveFunc reports whether the reader's side already holds a blob. It lets a delta bundle
// (one with a base) omit what the base provided.
type HaveFunc func(ctx context.Context, d digest.Digest) (bool, error)

// Result is what a reader learned from a complete, verified bundle.
type Result struct {
	// Root is the root's descriptor; Bundle is what it says.
	Root   ocispec.Descriptor
	Bundle *Bundle
	// Attachments are the root's signatures from index.json.
	Attachments []ocispec.Descriptor
	// Layout and Index are the oci-layout and index.json bytes as read.
	Layout, Index []byte
	// Blobs and Bytes count the blobs read and their sizes; FromBase counts the blobs a delta
	// left to its base.
	Blobs    int
	Bytes    int64
	FromBase int
}

// node is a blob the graph has learned of.
type node struct {
	desc ocispec.Descriptor
	item string
	seen bool
	base bool // absent, held by the base (deltas)
}

// graph checks a bundle's files as they arrive, in stream order or any order a reader drives.
type graph struct {
	// progress, when set, is told of every blob byte read (WithProgress).
	progress  func(n int64)
	lim       Limits
	have      HaveFunc
	visit     Visitor
	nodes     map[digest.Digest]*node
	total     int64
	layout    []byte
	index     []byte
	entries   []ocispec.Descriptor // index.json's manifests
	rootDesc  ocispec.Descriptor
	root      *Bundle
	attached  []ocispec.Descriptor
	itemRefs  map[string]ocispec.Descriptor // index.json's item entries by name
	blobs     int
	bytesRead int64
	fromBase  int
	// attachBytes sums the attachments' declared sizes (at most MaxAttachmentBytes).
	attachBytes int64
	// decided is set once the root passed the visitor (the trust decision, when the visitor
	// is a verifier): no item blob is read before it.
	decided bool
}

func newGraph(lim Limits, have HaveFunc, visit Visitor) *graph {
	if visit == nil {
		visit = func(context.Context, Entry, io.Reader) error { return nil }
	}
	return &graph{lim: lim.withDefaults(), have: have, visit: visit, nodes: map[digest.Digest]*node{}, itemRefs: map[string]ocispec.Descriptor{}}
}

// learn records a descriptor the graph now expects, checking it and the limits first.
func (g *graph) learn(d ocispec.Descriptor, item string) error {
	if !validDigest(d.Digest) {
		return errorf(item, "", CheckFormat, fixRepack, "descriptor digest %q is not sha256 with 64 lowercase hex characters", d.Digest)
	}
	if d.Size < 0 {
		return errorf(item, d.Digest, CheckSize, fixRepack, "negative size %d", d.Size)
	}
	if d.Digest == g.rootDesc.Digest && item != ItemRoot {
		return errorf(ItemRoot, d.Digest, CheckFormat, fixRepack, "the root is referred to again as part of %s; the root is only the entry named %q", itemLabel(item), RootRef)
	}
	if n, ok := g.nodes[d.Digest]; ok {
		if (n.item == ItemAttachment) != (item == ItemAttachment) && d.Digest != ocispec.DescriptorEmptyJSON.Digest {
			return errorf(item, d.Digest, CheckFormat, fixRepack, "blob is part of both %s and %s; the root's signatures share no blob with the bundle", itemLabel(n.item), itemLabel(item))
		}
		if n.desc.Size != d.Size {
			return errorf(item, d.Digest, CheckSize, fixRepack, "declared as %d bytes here and %d bytes elsewhere", d.Size, n.desc.Size)
		}
		if isManifestType(n.desc.MediaType) != isManifestType(d.MediaType) ||
			(isManifestType(d.MediaType) && isIndexType(n.desc.MediaType) != isIndexType(d.MediaType)) {
			return errorf(item, d.Digest, CheckMediaType, fixRepack, "declared as %q here and %q elsewhere", d.MediaType, n.desc.MediaType)
		}
		return nil
	}
	if isManifestType(d.MediaType) && d.Size > g.lim.MaxManifestSize {
		return errorf(item, d.Digest, CheckLimit, fixLimit, "manifest of %d bytes exceeds the manifest size limit %d", d.Size, g.lim.MaxManifestSize)
	}
	if d.Size > g.lim.MaxBlobSize {
		return errorf(item, d.Digest, CheckLimit, fixLimit, "blob of %d bytes exceeds the blob size limit %d", d.Size, g.lim.MaxBlobSize)
	}
	if len(g.nodes) >= g.lim.MaxBlobs {
		return errorf(item, d.Digest, CheckLimit, fixLimit, "more than %d blobs (blob count limit)", g.lim.MaxBlobs)
	}
	if g.total+d.Size > g.lim.MaxTotalSize {
		return errorf(item, d.Digest, CheckLimit, fixLimit, "total size exceeds the limit of %d bytes", g.lim.MaxTotalSize)
	}
	if item == ItemAttachment {
		if g.attachBytes+d.Size > MaxAttachmentBytes {
			return errorf(ItemAttachment, d.Digest, CheckLimit, "sign the bundle with 'mirror pack --key'; signatures are a few KiB",
				"attachments declare more than %d bytes, all the reader reads before the root's trust decision", MaxAttachmentBytes)
		}
		g.attachBytes += d.Size
	}
	g.total += d.Size
	g.nodes[d.Digest] = &node{desc: d, item: item}
	return nil
}

// itemLabel names an item or pseudo-item in a message.
func itemLabel(item string) string {
	switch item {
	case ItemRoot, ItemAttachment:
		return "the " + item
	}
	return "item " + item
}

// readSmall reads a file of at most max bytes (its declared size already checked).
func readSmall(r io.Reader, max int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%w: larger than %d bytes", errTooLarge, max)
	}
	return b, nil
}

// errTooLarge marks readSmall's refusal of a file over its limit, to tell it from a read that
// failed.
var errTooLarge = errors.New("over the limit")

// acceptLayout checks the oci-layout file.
func (g *graph) acceptLayout(ctx context.Context, size int64, r io.Reader) error {
	if g.layout != nil {
		return errorf(LayoutFile, "", CheckOrder, fixRepack, "appears twice")
	}
	if size > maxLayoutFileSize {
		return errorf(LayoutFile, "", CheckLimit, fixRepack, "%d bytes; an oci-layout file is a few dozen", size)
	}
	b, err := readSmall(r, maxLayoutFileSize)
	if err != nil {
		return errorf(LayoutFile, "", CheckTruncated, fixRecopy, "read: %v", err)
	}
	var l ocispec.ImageLayout
	if err := json.Unmarshal(b, &l); err != nil || l.Version != ocispec.ImageLayoutVersion {
		return errorf(LayoutFile, "", CheckFormat, fixRepack, "not an OCI layout version %s", ocispec.ImageLayoutVersion)
	}
	g.layout = b
	return g.visit(ctx, Entry{Path: LayoutFile, Item: LayoutFile, Descriptor: ocispec.Descriptor{MediaType: "application/json", Digest: digestOf(b), Size: int64(len(b))}}, bytes.NewReader(b))
}

// acceptIndex parses index.json: attachments, then the root named "bundle", then items.
func (g *graph) acceptIndex(ctx context.Context, size int64, r io.Reader) error {
	if g.layout == nil {
		return errorf(IndexFile, "", CheckOrder, "write the tar with 'mirror'", "index.json before oci-layout")
	}
	if g.index != nil {
		return errorf(IndexFile, "", CheckOrder, fixRepack, "appears twice")
	}
	if size > g.lim.MaxManifestSize {
		return errorf(IndexFile, "", CheckLimit, fixLimit, "%d bytes exceeds the manifest size limit %d", size, g.lim.MaxManifestSize)
	}
	b, err := readSmall(r, g.lim.MaxManifestSize)
	if err != nil {
		return errorf(IndexFile, "", CheckTruncated, fixRecopy, "read: %v", err)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(b, &idx); err != nil {
		return errorf(IndexFile, "", CheckFormat, fixRepack, "not an OCI index: %v", err)
	}
	if idx.SchemaVersion != 2 {
		return errorf(IndexFile, "", CheckFormat, fixRepack, "schemaVersion %d, want 2", idx.SchemaVersion)
	}
	rootAt := -1
	for i, e := range idx.Manifests {
		if e.Annotations[ocispec.AnnotationRefName] == RootRef {
			if rootAt >= 0 {
				return errorf(IndexFile, "", CheckFormat, fixRepack, "two entries are named %q", RootRef)
			}
			rootAt = i
		}
	}
	if rootAt < 0 {
		return errorf(IndexFile, "", CheckMissing, "is this a Ferry bundle? write it with 'mirror pack'", "no entry is named %q", RootRef)
	}
	g.rootDesc = plain(idx.Manifests[rootAt])
	if g.rootDesc.MediaType != ocispec.MediaTypeImageIndex {
		return errorf(ItemRoot, g.rootDesc.Digest, CheckMediaType, fixRepack, "media type %q, want %s", g.rootDesc.MediaType, ocispec.MediaTypeImageIndex)
	}
	// The root is fixed by its entry: no other entry may list its digest (as an attachment, it
	// would arrive tagged as one and its trust never be decided), and an attachment is listed
	// once and is no item (items may share a manifest: the root lists them).
	attachedAt := map[digest.Digest]int{}
	for i, e := range idx.Manifests {
		if i != rootAt && e.Digest == g.rootDesc.Digest {
			return errorf(ItemRoot, e.Digest, CheckFormat, fixRepack, "index.json lists the root again (entry %d, besides entry %d named %q); the root is only the entry named %q", i+1, rootAt+1, RootRef, RootRef)
		}
		if j, dup := attachedAt[e.Digest]; dup {
			return errorf(ItemAttachment, e.Digest, CheckFormat, fixRepack, "index.json lists this attachment twice (entries %d and %d)", j+1, i+1)
		}
		if i < rootAt {
			attachedAt[e.Digest] = i
		}
	}
	if rootAt > g.lim.MaxAttachments {
		return errorf(IndexFile, "", CheckLimit, fixLimit, "%d attachments exceed the limit of %d", rootAt, g.lim.MaxAttachments)
	}
	for _, e := range idx.Manifests[:rootAt] {
		if tag, ok := e.Annotations[ocispec.AnnotationRefName]; ok && tag != SignatureTag(g.rootDesc.Digest) {
			return errorf(ItemAttachment, e.Digest, CheckFormat, fixRepack, "named %q: an attachment is unnamed or named %s", tag, SignatureTag(g.rootDesc.Digest))
		}
		if !isManifestType(e.MediaType) {
			return errorf(ItemAttachment, e.Digest, CheckMediaType, fixRepack, "media type %q is not a manifest", e.MediaType)
		}
		if err := g.learn(plain(e), ItemAttachment); err != nil {
			return err
		}
		g.attached = append(g.attached, plain(e))
	}
	if err := g.learn(g.rootDesc, ItemRoot); err != nil {
		return err
	}
	for _, e := range idx.Manifests[rootAt+1:] {
		name := e.Annotations[ocispec.AnnotationRefName]
		if !ValidName(name) {
			return errorf(IndexFile, e.Digest, CheckFormat, fixRepack, "entry after the root named %q: items are named by their item names", name)
		}
		if _, dup := g.itemRefs[name]; dup {
			return errorf(IndexFile, e.Digest, CheckFormat, fixRepack, "two entries are named %q", name)
		}
		g.itemRefs[name] = plain(e)
	}
	g.index = b
	g.entries = idx.Manifests
	return g.visit(ctx, Entry{Path: IndexFile, Item: IndexFile, Descriptor: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: digestOf(b), Size: int64(len(b))}}, bytes.NewReader(b))
}

// SignatureTag is the tag cosign's tag-based scheme gives a signature of d: the name a root's
// signature has in index.json and in a registry.
func SignatureTag(d digest.Digest) string { return "sha256-" + d.Encoded() + ".sig" }

// blob checks one blob against what the graph expects and passes it to the visitor. It
// returns the blob's children when it is a manifest or index.
func (g *graph) blob(ctx context.Context, d digest.Digest, size int64, r io.Reader) ([]ocispec.Descriptor, error) {
	if g.index == nil {
		return nil, errorf("", d, CheckOrder, "write the tar with 'mirror'", "blob before index.json")
	}
	n, ok := g.nodes[d]
	if !ok {
		return nil, errorf("", d, CheckUnexpect, "write the tar with 'mirror' (stream order); a bundle holds only blobs its root reaches", "not referenced by anything read before it")
	}
	if n.seen {
		return nil, errorf(n.item, d, CheckUnexpect, fixRepack, "appears twice")
	}
	if size != n.desc.Size {
		return nil, errorf(n.item, d, CheckSize, fixRecopy, "file holds %d bytes, descriptor declares %d", size, n.desc.Size)
	}
	if !g.decided && n.item != ItemAttachment && d != g.rootDesc.Digest {
		return nil, errorf(n.item, d, CheckOrder, "write the bundle with 'mirror' (stream order: signatures, root, items)",
			"item blob before the root's trust decision; nothing but the root's signatures is read before it")
	}
	if d == g.rootDesc.Digest {
		n.item = ItemRoot // the root arrives as the root, whatever else named it
	}
	n.seen = true
	g.blobs++
	g.bytesRead += size
	v := newVerifier(r, n.desc, n.item)
	v.progress = g.progress
	e := Entry{Path: sha256Dir + "/" + d.Encoded(), Descriptor: n.desc, Item: n.item}
	if !isManifestType(n.desc.MediaType) {
		if err := g.visit(ctx, e, v); err != nil {
			return nil, err
		}
		return nil, v.drain()
	}
	data, err := io.ReadAll(v) // bounded: the descriptor's size passed the manifest limit
	if err != nil {
		return nil, err
	}
	children, err := g.parse(n, data)
	if err != nil {
		return nil, err
	}
	if err := g.visit(ctx, e, bytes.NewReader(data)); err != nil {
		return nil, err
	}
	if d == g.rootDesc.Digest {
		g.decided = true // the visitor (a verifier) accepted the root: items may be read
	}
	return children, nil
}

// manifestFields is the union of the fields of manifests and indexes that a reader checks.
type manifestFields struct {
	MediaType string                `json:"mediaType"`
	Config    *ocispec.Descriptor   `json:"config"`
	Layers    *[]ocispec.Descriptor `json:"layers"`
	Manifests *[]ocispec.Descriptor `json:"manifests"`
	Subject   *ocispec.Descriptor   `json:"subject"`
}

// parse parses a verified manifest or index, learns its children and returns them.
func (g *graph) parse(n *node, data []byte) ([]ocispec.Descriptor, error) {
	d := n.desc
	var m manifestFields
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, errorf(n.item, d.Digest, CheckFormat, fixRepack, "not valid JSON: %v", err)
	}
	if m.MediaType != d.MediaType && (m.MediaType != "" || !isOCI(d.MediaType)) {
		return nil, errorf(n.item, d.Digest, CheckMediaType, fixRepack, "content says media type %q, descriptor says %q", m.MediaType, d.MediaType)
	}
	var children []ocispec.Descriptor
	if isIndexType(d.MediaType) {
		if m.Config != nil || m.Layers != nil || m.Manifests == nil {
			return nil, errorf(n.item, d.Digest, CheckMediaType, fixRepack, "an index must have manifests and no config or layers")
		}
		children = *m.Manifests
	} else {
		if m.Manifests != nil || m.Config == nil {
			return nil, errorf(n.item, d.Digest, CheckMediaType, fixRepack, "a manifest must have a config and no manifests")
		}
		children = append([]ocispec.Descriptor{*m.Config}, deref(m.Layers)...)
	}
	if d.Digest == g.rootDesc.Digest {
		b, err := ParseRoot(data)
		if err != nil {
			return nil, err
		}
		if err := g.acceptRoot(b); err != nil {
			return nil, err
		}
		for i, c := range children {
			children[i] = plain(c)
			if err := g.learn(children[i], c.Annotations[AnnotationItemName]); err != nil {
				return nil, err
			}
		}
		return children, nil
	}
	if n.item == ItemAttachment && (m.Subject == nil || m.Subject.Digest != g.rootDesc.Digest) && !g.taggedSig(d.Digest) {
		return nil, errorf(ItemAttachment, d.Digest, CheckFormat, fixRepack, "neither refers to the root nor is tagged %s", SignatureTag(g.rootDesc.Digest))
	}
	if isIndexType(d.MediaType) && g.root != nil {
		// An image restricted to some platforms carries only those children of its indexes.
		if it := g.root.Item(n.item); it != nil && len(it.Platforms) > 0 {
			kept := children[:0:0]
			for _, c := range children {
				if carries(it.Platforms, c.Platform) {
					kept = append(kept, c)
				}
			}
			children = kept
		}
	}
	for _, c := range children {
		if err := g.learn(c, n.item); err != nil {
			return nil, err
		}
	}
	return children, nil
}

func deref(p *[]ocispec.Descriptor) []ocispec.Descriptor {
	if p == nil {
		return nil
	}
	return *p
}

func isOCI(mt string) bool {
	return mt == ocispec.MediaTypeImageManifest || mt == ocispec.MediaTypeImageIndex
}

func (g *graph) taggedSig(d digest.Digest) bool {
	for _, e := range g.entries {
		if e.Digest == d && e.Annotations[ocispec.AnnotationRefName] == SignatureTag(g.rootDesc.Digest) {
			return true
		}
	}
	return false
}

// acceptRoot checks what index.json said about items against the root.
func (g *graph) acceptRoot(b *Bundle) error {
	if b.Base != "" && g.have == nil {
		return errorf(ItemRoot, g.rootDesc.Digest, CheckMissing, "import the base bundle first, then this delta", "delta against base %s, and the reader holds no base", b.Base)
	}
	if len(g.itemRefs) != len(b.Items) {
		return errorf(IndexFile, "", CheckFormat, fixRepack, "lists %d items, the root %d", len(g.itemRefs), len(b.Items))
	}
	for _, it := range b.Items {
		ref, ok := g.itemRefs[it.Name]
		if !ok || ref.Digest != it.Descriptor.Digest || ref.Size != it.Descriptor.Size || ref.MediaType != it.Descriptor.MediaType {
			return errorf(it.Name, it.Descriptor.Digest, CheckFormat, fixRepack, "index.json's entry disagrees with the signed root")
		}
	}
	g.root = b
	return nil
}

// missing decides a blob that did not arrive: held by the base of a delta, or an error.
func (g *graph) missing(ctx context.Context, n *node, check Check) error {
	if g.root != nil && g.root.Base != "" && g.have != nil {
		ok, err := g.have(ctx, n.desc.Digest)
		if err != nil {
			return fmt.Errorf("item %s: blob %s: look up in base: %w", n.item, n.desc.Digest, err)
		}
		if ok {
			n.base = true
			g.fromBase++
			return nil
		}
	}
	if check == CheckTruncated {
		return errorf(n.item, n.desc.Digest, CheckTruncated, fixRecopy, "the tar ended before this blob")
	}
	return errorf(n.item, n.desc.Digest, CheckMissing, fixRecopy, "not in the bundle")
}

// finish checks that everything expected arrived (or, for a delta, is held by the base).
func (g *graph) finish(ctx context.Context, check Check) (*Result, error) {
	if g.layout == nil {
		return nil, errorf(LayoutFile, "", check, fixRecopy, "missing")
	}
	if g.index == nil {
		return nil, errorf(IndexFile, "", check, fixRecopy, "missing")
	}
	if n := g.nodes[g.rootDesc.Digest]; !n.seen {
		return nil, errorf(ItemRoot, g.rootDesc.Digest, check, fixRecopy, "the root is not in the bundle")
	}
	// Report in a stable order, so the same damage always gives the same message.
	for _, n := range g.pending() {
		if err := g.missing(ctx, n, check); err != nil {
			return nil, err
		}
	}
	for _, it := range g.root.Items {
		for _, r := range it.Referrers {
			if _, ok := g.nodes[r.Subject]; !ok {
				return nil, errorf(it.Name, r.Descriptor.Digest, CheckMissing, fixRepack, "referrer's subject %s is not in the bundle", r.Subject)
			}
		}
	}
	return &Result{Root: g.rootDesc, Bundle: g.root, Attachments: g.attached, Layout: g.layout, Index: g.index,
		Blobs: g.blobs, Bytes: g.bytesRead, FromBase: g.fromBase}, nil
}

// pending lists the nodes not seen, in a stable order (by item, then digest).
func (g *graph) pending() []*node {
	var out []*node
	for _, n := range g.nodes {
		if !n.seen && !n.base {
			out = append(out, n)
		}
	}
	sortNodes(out)
	return out
}
