package verify

import (
	"bytes"
	"context"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/payload"
	"oras.land/oras-go/v2/content"
)

// Media type and annotation of cosign's tag-based signatures.
const (
	SimpleSigningMediaType = "application/vnd.dev.cosign.simplesigning.v1+json"
	SignatureAnnotation    = "dev.cosignproject.cosign/signature"
	cosignSignatureType    = "cosign container image signature"
	maxSignatureObject     = 1 << 20
)

// Fetcher reads blobs by descriptor: a bundle layout, or blobs kept while streaming.
type Fetcher interface {
	Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error)
}

// Key is a public key pinned in configuration, named for messages.
type Key struct {
	Name     string
	Verifier signature.Verifier
}

// LoadPublicKey reads a PEM public key (cosign.pub: ECDSA P-256, Ed25519 or RSA).
func LoadPublicKey(path string) (Key, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return Key{}, fmt.Errorf("public key %s: %w", path, err)
	}
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(pem)
	if err != nil {
		return Key{}, fmt.Errorf("public key %s: %w", path, err)
	}
	v, err := signature.LoadVerifier(pub, crypto.SHA256)
	if err != nil {
		return Key{}, fmt.Errorf("public key %s: %w", path, err)
	}
	return Key{Name: path, Verifier: v}, nil
}

// ErrNoValidSignature is wrapped by RootSignature's error when no signature verifies.
var ErrNoValidSignature = errors.New("no valid signature")

// RootSignature checks that at least one attachment is a cosign signature of root made by
// one of keys: the signature verifies over the payload, and the payload names root's digest.
// Keys come only from the caller's configuration, never from the bundle.
func RootSignature(ctx context.Context, f Fetcher, root ocispec.Descriptor, attachments []ocispec.Descriptor, keys []Key) error {
	if len(keys) == 0 {
		return fmt.Errorf("bundle %s: no public key to verify with", root.Digest)
	}
	var reasons []string
	for _, a := range attachments {
		err := signatureBy(ctx, f, root.Digest, a, keys)
		if err == nil {
			return nil
		}
		reasons = append(reasons, fmt.Sprintf("%s: %v", a.Digest, err))
	}
	if len(reasons) == 0 {
		reasons = append(reasons, "the bundle carries no signature")
	}
	return fmt.Errorf("bundle %s: %w by %s (%s)", root.Digest, ErrNoValidSignature, keyNames(keys), strings.Join(reasons, "; "))
}

func keyNames(keys []Key) string {
	names := make([]string, len(keys))
	for i, k := range keys {
		names[i] = k.Name
	}
	return strings.Join(names, ", ")
}

func readAll(ctx context.Context, f Fetcher, d ocispec.Descriptor) ([]byte, error) {
	if d.Size > maxSignatureObject {
		return nil, fmt.Errorf("%s is %d bytes; a signature is at most %d", d.Digest, d.Size, maxSignatureObject)
	}
	rc, err := f.Fetch(ctx, d)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := content.ReadAll(rc, d) // reads at most d.Size bytes, checked above, and verifies them
	if err != nil {
		return nil, fmt.Errorf("%s does not match its descriptor: %w", d.Digest, err)
	}
	return b, nil
}

// signatureBy checks one attachment: a manifest whose simple-signing layers carry signatures by
// one of keys over a payload that names subject.
func signatureBy(ctx context.Context, f Fetcher, subject digest.Digest, att ocispec.Descriptor, keys []Key) error {
	return simpleSignatures(ctx, f, subject, att, func(_ ocispec.Descriptor, sig, body []byte) error {
		return signedByKey(keys, sig, body)
	})
}

// signedByKey checks that sig is a signature of body by one of keys.
func signedByKey(keys []Key, sig, body []byte) error {
	for _, k := range keys {
		if k.Verifier.VerifySignature(bytes.NewReader(sig), bytes.NewReader(body)) == nil {
			return nil
		}
	}
	return errors.New("signature made by none of the keys")
}

// simpleSignatures reads a tag-based cosign signature manifest and hands each simple-signing layer
// whose payload names subject to check, with its decoded signature and payload; it returns nil
// as soon as check accepts one, and otherwise why each layer failed.
func simpleSignatures(ctx context.Context, f Fetcher, subject digest.Digest, att ocispec.Descriptor, check func(layer ocispec.Descriptor, sig, body []byte) error) error {
	raw, err := readAll(ctx, f, att)
	if err != nil {
		return err
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return fmt.Errorf("not a manifest: %w", err)
	}
	var reasons []string
	for _, l := range m.Layers {
		if l.MediaType != SimpleSigningMediaType {
			continue
		}
		sig, err := base64.StdEncoding.DecodeString(l.Annotations[SignatureAnnotation])
		if err != nil || len(sig) == 0 {
			reasons = append(reasons, "a layer without a signature annotation")
			continue
		}
		body, err := readAll(ctx, f, l)
		if err != nil {
			return err
		}
		var p payload.SimpleContainerImage
		if err := json.Unmarshal(body, &p); err != nil {
			reasons = append(reasons, "payload is not cosign's simple signing: "+err.Error())
			continue
		}
		if p.Critical.Type != cosignSignatureType || p.Critical.Image.DockerManifestDigest != string(subject) {
			reasons = append(reasons, fmt.Sprintf("payload signs %q, not %s", p.Critical.Image.DockerManifestDigest, subject))
			continue
		}
		if err := check(l, sig, body); err != nil {
			reasons = append(reasons, err.Error())
			continue
		}
		return nil
	}
	if len(reasons) == 0 {
		return fmt.Errorf("no cosign signature layer")
	}
	return errors.New(strings.Join(reasons, "; "))
}
