package verify

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ferry-gitops/ferry/bundle"
)

// maxCollected bounds what a Collector keeps: signatures are a few KiB, and the reader reads
// no more than this of them before the root's trust decision.
const maxCollected = bundle.MaxAttachmentBytes

// Collector keeps the attachments' blobs (the root's signatures) as a bundle streams past, so
// their signatures can be checked once the stream is verified, without reading anything twice.
type Collector struct {
	mu        sync.Mutex
	blobs     map[digest.Digest][]byte
	manifests []ocispec.Descriptor
	total     int
}

// NewCollector returns an empty Collector.
func NewCollector() *Collector { return &Collector{blobs: map[digest.Digest][]byte{}} }

// Visit is a bundle.Visitor: it keeps attachment blobs, reading them to the end (so they verify).
func (c *Collector) Visit(ctx context.Context, e bundle.Entry, r io.Reader) error {
	_, err := c.keep(e, r)
	return err
}

// keep reads and keeps an attachment blob and returns its bytes (nil for other entries).
func (c *Collector) keep(e bundle.Entry, r io.Reader) ([]byte, error) {
	if e.Item != bundle.ItemAttachment {
		return nil, nil
	}
	b, err := io.ReadAll(io.LimitReader(r, maxCollected+1))
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.total += len(b); c.total > maxCollected {
		return nil, fmt.Errorf("attachments exceed %d bytes; signatures are far smaller", maxCollected)
	}
	c.blobs[e.Descriptor.Digest] = b
	switch e.Descriptor.MediaType {
	case ocispec.MediaTypeImageManifest, bundle.MediaTypeDockerManifest:
		c.manifests = append(c.manifests, e.Descriptor)
	}
	return b, nil
}

// Attachments returns the descriptors of the attachment manifests seen so far.
func (c *Collector) Attachments() []ocispec.Descriptor {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]ocispec.Descriptor(nil), c.manifests...)
}

// Fetch returns a kept blob.
func (c *Collector) Fetch(_ context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.blobs[d.Digest]
	if !ok {
		return nil, fmt.Errorf("blob %s: not an attachment of this bundle", d.Digest)
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}
