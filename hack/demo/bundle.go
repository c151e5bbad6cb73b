package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ferry-gitops/ferry/bundle"
)

// demoBundle packs the upstream image into a bundle directory byte for byte, writes it as a
// tar split into parts (what crosses the gap), reads the parts back verifying every blob, and
// shows a damaged part being refused by name.
func demoBundle(ctx context.Context, dir string, ref name.Reference) error {
	layoutDir := filepath.Join(dir, "bundle")
	l, err := bundle.NewLayout(layoutDir)
	if err != nil {
		return err
	}
	img, err := remote.Image(ref, remote.WithContext(ctx))
	if err != nil {
		return err
	}
	root, err := pushImage(ctx, l, img)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	b := &bundle.Bundle{Sequence: 1, Created: now, Expires: now.Add(30 * 24 * time.Hour), Items: []bundle.Item{{
		Name: "app", Kind: bundle.KindImage, Source: ref.String(), Revision: string(root.Digest), Descriptor: root,
	}}}
	rootDesc, err := bundle.Write(ctx, l, b, nil)
	if err != nil {
		return err
	}
	fmt.Printf("    bundle directory %s: root %s, item app = %s (upstream digest)\n", layoutDir, rootDesc.Digest, root.Digest)

	var tarball bytes.Buffer
	if _, err := bundle.WriteTar(ctx, &tarball, layoutDir); err != nil {
		return err
	}
	medium := filepath.Join(dir, "usb")
	if err := os.MkdirAll(medium, 0o755); err != nil {
		return err
	}
	list, err := bundle.Split(ctx, bytes.NewReader(tarball.Bytes()), medium, "bundle-1.tar", 256<<10)
	if err != nil {
		return err
	}
	fmt.Printf("    tar of %d bytes split into %d parts of at most 256 KiB on %s\n", list.Size, len(list.Parts), medium)

	mediumRoot, err := os.OpenRoot(medium)
	if err != nil {
		return err
	}
	defer mediumRoot.Close()
	res, err := bundle.ReadParts(ctx, mediumRoot.FS(), bundle.PartListName("bundle-1.tar"))
	if err != nil {
		return err
	}
	fmt.Printf("    read back from the parts: %s, %d blobs (%d bytes) verified in one pass\n", res.Bundle, res.Blobs, res.Bytes)
	for _, it := range res.Bundle.Items {
		fmt.Printf("      %-8s %-6s %s @ %s\n", it.Name, it.Kind, it.Source, it.Revision)
	}

	damaged := filepath.Join(medium, list.Parts[len(list.Parts)/2].Name)
	data, err := os.ReadFile(damaged)
	if err != nil {
		return err
	}
	data[len(data)/2] ^= 0xff
	if err := os.WriteFile(damaged, data, 0o644); err != nil {
		return err
	}
	if _, err := bundle.ReadParts(ctx, mediumRoot.FS(), bundle.PartListName("bundle-1.tar")); err == nil {
		return fmt.Errorf("a damaged part was accepted")
	} else {
		fmt.Printf("    one byte flipped in %s, and the bundle is refused:\n      %v\n", filepath.Base(damaged), err)
	}
	return nil
}

// pushImage copies an image's manifest, config and layers into l byte for byte.
func pushImage(ctx context.Context, l *bundle.Layout, img v1.Image) (ocispec.Descriptor, error) {
	layers, err := img.Layers()
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	for _, layer := range layers {
		d, err := layer.Digest()
		if err != nil {
			return ocispec.Descriptor{}, err
		}
		size, err := layer.Size()
		if err != nil {
			return ocispec.Descriptor{}, err
		}
		mt, err := layer.MediaType()
		if err != nil {
			return ocispec.Descriptor{}, err
		}
		rc, err := layer.Compressed()
		if err != nil {
			return ocispec.Descriptor{}, err
		}
		err = l.Push(ctx, ocispec.Descriptor{MediaType: string(mt), Digest: digest.Digest(d.String()), Size: size}, rc)
		rc.Close()
		if err != nil {
			return ocispec.Descriptor{}, err
		}
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	if err := pushBytes(ctx, l, ocispec.MediaTypeImageConfig, cfg); err != nil {
		return ocispec.Descriptor{}, err
	}
	raw, err := img.RawManifest()
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	mt, err := img.MediaType()
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	desc := ocispec.Descriptor{MediaType: string(mt), Digest: digest.FromBytes(raw), Size: int64(len(raw))}
	return desc, l.Push(ctx, desc, bytes.NewReader(raw))
}

func pushBytes(ctx context.Context, l *bundle.Layout, mt string, b []byte) error {
	return l.Push(ctx, ocispec.Descriptor{MediaType: mt, Digest: digest.FromBytes(b), Size: int64(len(b))}, io.Reader(bytes.NewReader(b)))
}
