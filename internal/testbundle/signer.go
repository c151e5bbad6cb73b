package testbundle

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/signing"
	"github.com/ferry-gitops/ferry/verify"
)

// Signer is a fresh ECDSA P-256 key that signs bundle roots as `mirror pack --key` does.
type Signer struct {
	SV signature.SignerVerifier
	// PublicPEM is the public key as cosign.pub holds it.
	PublicPEM []byte
}

// NewSigner makes a key.
func NewSigner(t testing.TB) *Signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sv, err := signature.LoadECDSASignerVerifier(k, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	pem, err := cryptoutils.MarshalPublicKeyToPEM(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return &Signer{SV: sv, PublicPEM: pem}
}

// Sign is a SignFunc: it signs root and returns the signature to attach.
func (s *Signer) Sign(t testing.TB, l *bundle.Layout, root ocispec.Descriptor) []ocispec.Descriptor {
	t.Helper()
	d, err := signing.Sign(context.Background(), l, root, s.SV)
	if err != nil {
		t.Fatal(err)
	}
	return []ocispec.Descriptor{d}
}

// Key is the signer's public key as the agent pins it.
func (s *Signer) Key(name string) verify.TrustedKey {
	return verify.TrustedKey{Key: verify.Key{Name: name, Verifier: s.SV}}
}
