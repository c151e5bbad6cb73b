package testbundle

import (
	"bytes"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/verify"
)

// AgentLabels are the labels hack/image gives the agent's image, at version.
func AgentLabels(version string) map[string]string {
	return map[string]string{verify.LabelTitle: verify.AgentTitle, verify.LabelVersion: version}
}

// Platform is one platform of an image built by Image: "linux/amd64" and its config's labels.
type Platform struct {
	Platform string
	Labels   map[string]string
}

// Image builds an OCI image with go-containerregistry (a random layer, the config labels given)
// for each platform, pushes every blob into l and returns the root's descriptor: the image for
// one platform, an image index for several.
func Image(t testing.TB, l *bundle.Layout, platforms ...Platform) ocispec.Descriptor {
	t.Helper()
	var adds []mutate.IndexAddendum
	var imgs []v1.Image
	for _, p := range platforms {
		plat, err := v1.ParsePlatform(p.Platform)
		if err != nil {
			t.Fatal(err)
		}
		img, err := random.Image(512, 1)
		if err != nil {
			t.Fatal(err)
		}
		img = mutate.MediaType(img, types.OCIManifestSchema1)
		img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		cf = cf.DeepCopy()
		cf.OS, cf.Architecture, cf.Variant = plat.OS, plat.Architecture, plat.Variant
		cf.Config.Labels = p.Labels
		if img, err = mutate.ConfigFile(img, cf); err != nil {
			t.Fatal(err)
		}
		pushImage(t, l, img)
		imgs = append(imgs, img)
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: plat}})
	}
	if len(imgs) == 1 {
		raw, err := imgs[0].RawManifest()
		if err != nil {
			t.Fatal(err)
		}
		return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(raw), Size: int64(len(raw))}
	}
	idx := mutate.IndexMediaType(mutate.AppendManifests(empty.Index, adds...), types.OCIImageIndex)
	raw, err := idx.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	return Push(t, l, ocispec.MediaTypeImageIndex, raw)
}

// pushImage pushes an image's layers, config and manifest into l.
func pushImage(t testing.TB, l *bundle.Layout, img v1.Image) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, layer := range layers {
		mt, err := layer.MediaType()
		if err != nil {
			t.Fatal(err)
		}
		rc, err := layer.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		_, err = b.ReadFrom(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		Push(t, l, string(mt), b.Bytes())
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	Push(t, l, ocispec.MediaTypeImageConfig, cfg)
	raw, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	Push(t, l, ocispec.MediaTypeImageManifest, raw)
}

// AddImage adds an image item named name (built by Image) to f's bundle and rewrites its root
// signed by sign.
func (f *Fixture) AddImage(t testing.TB, name string, sign SignFunc, platforms ...Platform) ocispec.Descriptor {
	t.Helper()
	d := Image(t, f.Layout, platforms...)
	f.Bundle.Items = append(f.Bundle.Items, bundle.Item{Name: name, Kind: bundle.KindImage, Source: "registry.example/ferry/sync", Revision: string(d.Digest), Descriptor: d})
	f.Write(t, sign)
	return d
}
