package cache

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/verify"
)

// maxConfigSize bounds an image config read for its labels (a config is a blob, which the
// reader bounds only by the blob size limit).
const maxConfigSize = 16 << 20

// maxImageDepth bounds how deep indexes nest inside an image item.
const maxImageDepth = 4

// Docker's media types, which image items may keep byte for byte.
const (
	dockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	dockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
)

// agentImages collects the labels of every image item of a verified bundle, reading each
// manifest, index and config from the staging folder (a blob this import added) or the cache
// (a blob it held already). Every blob was verified by the import; nothing is read from the
// medium.
func (c *Cache) agentImages(stage string, res *bundle.Result, limits bundle.Limits) ([]verify.AgentImage, error) {
	limits = limits.WithDefaults()
	var out []verify.AgentImage
	for _, it := range res.Bundle.Items {
		if it.Kind != bundle.KindImage {
			continue
		}
		img := verify.AgentImage{Item: it.Name}
		if err := c.imageLabels(stage, it, it.Descriptor, "", limits, 0, &img.Labels); err != nil {
			return nil, err
		}
		out = append(out, img)
	}
	return out, nil
}

// imageLabels appends the labels of d (a manifest or an index of image item it, whose platform
// is plat) and of everything under it that the bundle carries to out.
func (c *Cache) imageLabels(stage string, it bundle.Item, d ocispec.Descriptor, plat string, limits bundle.Limits, depth int, out *[]verify.ImageLabels) error {
	item := it.Name
	switch d.MediaType {
	case ocispec.MediaTypeImageIndex, dockerManifestList:
		if depth >= maxImageDepth {
			return bundle.Reject(item, d.Digest, bundle.CheckLimit, "", "indexes nest deeper than %d", maxImageDepth)
		}
		var idx ocispec.Index
		if err := c.readJSON(stage, item, d.Digest, limits.MaxManifestSize, &idx); err != nil {
			return err
		}
		*out = append(*out, verify.ImageLabels{Where: "index " + string(d.Digest) + " annotations", Labels: idx.Annotations})
		for _, m := range idx.Manifests {
			p := bundle.PlatformString(m.Platform)
			if p == "unknown/unknown" {
				continue // an attestation manifest beside the platforms: no runtime runs it
			}
			if !it.Carries(m.Platform) {
				continue // a platform the item leaves out: not in the bundle, so nothing can run it from Ferry
			}
			if err := c.imageLabels(stage, it, m, p, limits, depth+1, out); err != nil {
				return err
			}
		}
	case ocispec.MediaTypeImageManifest, dockerManifest:
		var m ocispec.Manifest
		if err := c.readJSON(stage, item, d.Digest, limits.MaxManifestSize, &m); err != nil {
			return err
		}
		of := ""
		if plat != "" {
			of = " of " + plat
		}
		*out = append(*out, verify.ImageLabels{Where: "manifest " + string(d.Digest) + of + " annotations", Labels: m.Annotations})
		switch m.Config.MediaType {
		case ocispec.MediaTypeImageConfig, "application/vnd.docker.container.image.v1+json":
		default:
			return nil // an artifact, not a runnable image
		}
		var cfg struct {
			Config struct {
				Labels map[string]string `json:"Labels"`
			} `json:"config"`
		}
		if err := c.readJSON(stage, item, m.Config.Digest, maxConfigSize, &cfg); err != nil {
			return err
		}
		*out = append(*out, verify.ImageLabels{Where: "config " + string(m.Config.Digest) + of, Labels: cfg.Config.Labels, Config: true})
	}
	return nil
}

// readJSON decodes a verified blob of the import: staged, or held by the cache.
func (c *Cache) readJSON(stage, item string, d digest.Digest, max int64, v any) error {
	if d.Validate() != nil || d.Algorithm() != digest.SHA256 {
		return bundle.Reject(item, d, bundle.CheckFormat, "", "not a sha256 digest")
	}
	f, err := os.Open(filepath.Join(stage, "blobs", d.Encoded()))
	if os.IsNotExist(err) {
		f, err = os.Open(c.blobPath(d))
	}
	if err != nil {
		return fmt.Errorf("item %s: read blob %s for its labels: %w", item, d, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return fmt.Errorf("item %s: read blob %s for its labels: %w", item, d, err)
	}
	if int64(len(b)) > max {
		return bundle.Reject(item, d, bundle.CheckLimit, "", "larger than %d bytes, too large to read its labels", max)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return bundle.Reject(item, d, bundle.CheckFormat, "", "not JSON: %v", err)
	}
	return nil
}
