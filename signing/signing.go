package signing

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/cosign/v2/pkg/oci"
	"github.com/sigstore/cosign/v2/pkg/oci/empty"
	"github.com/sigstore/cosign/v2/pkg/oci/mutate"
	"github.com/sigstore/cosign/v2/pkg/oci/static"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/payload"

	"github.com/ferry-gitops/ferry/bundle"
)

// PasswordEnv names the environment variable holding a cosign key's password, as cosign's own.
const PasswordEnv = "COSIGN_PASSWORD"

// Identity is the docker-reference a bundle signature's payload names. cosign checks the
// payload's digest, not this name, so a bundle verifies wherever it is pushed.
const Identity = "ferry.local/bundle"

// LoadKey reads an encrypted cosign private key (cosign generate-key-pair) with its password.
func LoadKey(path string, password []byte) (signature.SignerVerifier, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	sv, err := cosign.LoadPrivateKey(pem, password, nil)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w (is %s set to its password?)", path, err, PasswordEnv)
	}
	return sv, nil
}

// Pusher is where the signature goes: a bundle layout.
type Pusher interface {
	Push(ctx context.Context, desc ocispec.Descriptor, r io.Reader) error
}

// Sign signs root's digest with each signer and pushes the signature manifest (one layer per
// signature, as cosign accumulates them), its config and its layers into dst. It returns the
// manifest's descriptor, named sha256-<root hex>.sig for the layout index, ready to pass to
// bundle.Write as an attachment.
func Sign(ctx context.Context, dst Pusher, root ocispec.Descriptor, signers ...signature.Signer) (ocispec.Descriptor, error) {
	d, err := sign(ctx, dst, root, signers)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("sign bundle %s: %w", root.Digest, err)
	}
	return d, nil
}

func sign(ctx context.Context, dst Pusher, root ocispec.Descriptor, signers []signature.Signer) (ocispec.Descriptor, error) {
	ref, err := name.NewDigest(Identity + "@" + string(root.Digest))
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	body, err := (&payload.Cosign{Image: ref}).MarshalJSON()
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	if len(signers) == 0 {
		return ocispec.Descriptor{}, errors.New("no key")
	}
	var layers []oci.Signature
	for _, signer := range signers {
		sig, err := signer.SignMessage(bytes.NewReader(body))
		if err != nil {
			return ocispec.Descriptor{}, err
		}
		ociSig, err := static.NewSignature(body, base64.StdEncoding.EncodeToString(sig))
		if err != nil {
			return ocispec.Descriptor{}, err
		}
		layers = append(layers, ociSig)
	}
	sigs, err := mutate.AppendSignatures(empty.Signatures(), false, layers...)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	// Push the signature image exactly as cosign would lay it out in a registry.
	imgLayers, err := sigs.Layers()
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	for _, l := range imgLayers {
		if err := pushLayer(ctx, dst, l); err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("signature layer: %w", err)
		}
	}
	cfg, err := sigs.RawConfigFile()
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	m, err := sigs.Manifest()
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	if err := push(ctx, dst, string(m.Config.MediaType), cfg); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("signature config: %w", err)
	}
	raw, err := sigs.RawManifest()
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	mt, err := sigs.MediaType()
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	if err := push(ctx, dst, string(mt), raw); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("signature manifest: %w", err)
	}
	return ocispec.Descriptor{
		MediaType:   string(mt),
		Digest:      digest.FromBytes(raw),
		Size:        int64(len(raw)),
		Annotations: map[string]string{ocispec.AnnotationRefName: bundle.SignatureTag(root.Digest)},
	}, nil
}

func pushLayer(ctx context.Context, dst Pusher, l v1.Layer) error {
	mt, err := l.MediaType()
	if err != nil {
		return err
	}
	rc, err := l.Compressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return err
	}
	return push(ctx, dst, string(mt), b)
}

func push(ctx context.Context, dst Pusher, mt string, b []byte) error {
	d := ocispec.Descriptor{MediaType: mt, Digest: digest.FromBytes(b), Size: int64(len(b))}
	if err := dst.Push(ctx, d, bytes.NewReader(b)); err != nil {
		return fmt.Errorf("push blob %s: %w", d.Digest, err)
	}
	return nil
}
