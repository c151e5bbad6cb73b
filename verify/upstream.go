package verify

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	cbundle "github.com/sigstore/cosign/v2/pkg/cosign/bundle"
	"github.com/sigstore/cosign/v2/pkg/oci/static"
	sgbundle "github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	sgverify "github.com/sigstore/sigstore-go/pkg/verify"

	"github.com/ferry-gitops/ferry/bundle"
)

// Media and predicate types of cosign's Sigstore bundle signatures.
const (
	SigstoreBundleMediaType = "application/vnd.dev.sigstore.bundle.v0.3+json"
	cosignSignPredicateType = "https://sigstore.dev/cosign/sign/v1"
)

// ErrUnsigned is wrapped by ImageSignature's error when an image carries no signature at all.
var ErrUnsigned = errors.New("carries no signature")

// ImagePolicy says which upstream signers an image must be signed by.
type ImagePolicy struct {
	Keys []Key // public keys; a signature by any one verifies (threshold 1)
	// Keyless: a Sigstore trusted root (trusted_root.json content) and the expected identity.
	TrustedRoot []byte
	Identity    string // certificate SAN, e.g. an email or a workflow URL (exact match)
	Issuer      string // OIDC issuer (exact match)
}

// signers names p's signers for messages.
func (p ImagePolicy) signers() string {
	var s []string
	if len(p.Keys) > 0 {
		s = append(s, keyNames(p.Keys))
	}
	if len(p.TrustedRoot) > 0 {
		s = append(s, fmt.Sprintf("identity %q of issuer %q", p.Identity, p.Issuer))
	}
	return strings.Join(s, " or ")
}

// ImageSignature checks that item's image (its root manifest digest, item.Descriptor.Digest) carries,
// among item.Referrers, at least one signature valid under p, verified offline from blobs read through f.
func ImageSignature(ctx context.Context, f Fetcher, item bundle.Item, p ImagePolicy) error {
	img := item.Descriptor.Digest
	fail := func(format string, args ...any) error {
		return fmt.Errorf("item %s: image %s: %w", item.Name, img, fmt.Errorf(format, args...))
	}
	if len(p.Keys) == 0 && len(p.TrustedRoot) == 0 {
		return fail("no public key or trusted root to verify with")
	}
	var tr *root.TrustedRoot
	if len(p.TrustedRoot) > 0 {
		if p.Identity == "" || p.Issuer == "" {
			return fail("a keyless policy needs both an identity and an issuer")
		}
		var err error
		if tr, err = root.NewTrustedRootFromJSON(p.TrustedRoot); err != nil {
			return fail("trusted root: %w", err)
		}
	}
	var reasons []string
	for _, r := range item.Referrers {
		if r.Subject != img {
			continue // a signature of a platform's manifest, not of the image
		}
		var err error
		switch {
		case strings.HasSuffix(r.Tag, ".sig"):
			err = tagSignature(ctx, f, img, r.Descriptor, p, tr)
		case r.Descriptor.ArtifactType == SigstoreBundleMediaType:
			err = sigstoreBundle(ctx, f, img, r.Descriptor, p, tr)
		default:
			continue // an attestation or an SBOM
		}
		if err == nil {
			return nil
		}
		form := "Sigstore bundle"
		if r.Tag != "" {
			form = r.Tag
		}
		reasons = append(reasons, fmt.Sprintf("%s (%s): %v", r.Descriptor.Digest, form, err))
	}
	if len(reasons) == 0 {
		return fmt.Errorf("item %s: image %s: %w (mirror with signatures: true)", item.Name, img, ErrUnsigned)
	}
	return fmt.Errorf("item %s: image %s: %w by %s (%s)", item.Name, img, ErrNoValidSignature, p.signers(), strings.Join(reasons, "; "))
}

// tagSignature checks a tag-based cosign signature (sha256-<hex>.sig): by one of p's keys, or
// keylessly with a certificate and a Rekor bundle checked against tr.
func tagSignature(ctx context.Context, f Fetcher, img digest.Digest, d ocispec.Descriptor, p ImagePolicy, tr *root.TrustedRoot) error {
	return simpleSignatures(ctx, f, img, d, func(l ocispec.Descriptor, sig, body []byte) error {
		var reasons []string
		if len(p.Keys) > 0 {
			err := signedByKey(p.Keys, sig, body)
			if err == nil {
				return nil
			}
			reasons = append(reasons, err.Error())
		}
		if tr != nil {
			err := keylessTagSignature(ctx, img, l, sig, body, p, tr)
			if err == nil {
				return nil
			}
			reasons = append(reasons, "keyless: "+err.Error())
		}
		return errors.New(strings.Join(reasons, "; "))
	})
}

// keylessTagSignature verifies one simple-signing layer signed with a certificate: the certificate
// chains to tr's certificate authorities at the Rekor entry's integrated time, names p's identity
// and issuer, its key verifies the signature, and the Rekor bundle's signed entry timestamp
// verifies with tr's Rekor key and matches the signature, certificate and payload.
func keylessTagSignature(ctx context.Context, img digest.Digest, l ocispec.Descriptor, sig, body []byte, p ImagePolicy, tr *root.TrustedRoot) error {
	cert := l.Annotations[static.CertificateAnnotationKey]
	if cert == "" {
		return errors.New("no certificate")
	}
	rawBundle := l.Annotations[static.BundleAnnotationKey]
	if rawBundle == "" {
		return errors.New("no Rekor bundle, so no time to check the certificate at")
	}
	var rb cbundle.RekorBundle
	if err := json.Unmarshal([]byte(rawBundle), &rb); err != nil {
		return fmt.Errorf("the Rekor bundle: %w", err)
	}
	s, err := static.NewSignature(body, base64.StdEncoding.EncodeToString(sig),
		static.WithCertChain([]byte(cert), []byte(l.Annotations[static.ChainAnnotationKey])), static.WithBundle(&rb))
	if err != nil {
		return err
	}
	h, err := v1.NewHash(string(img))
	if err != nil {
		return err
	}
	co := &cosign.CheckOpts{
		TrustedMaterial: tr,
		Identities:      []cosign.Identity{{Issuer: p.Issuer, Subject: p.Identity}},
		ClaimVerifier:   cosign.SimpleClaimVerifier,
		Offline:         true,
		IgnoreSCT:       true,
	}
	verified, err := cosign.VerifyImageSignature(ctx, s, h, co)
	if err != nil {
		return err
	}
	if !verified {
		return errors.New("the Rekor bundle did not verify")
	}
	return nil
}

// sigstoreBundle checks a Sigstore bundle referrer: a manifest whose one layer is a bundle with a
// DSSE envelope (cosign's signing statement) or a message signature over the image digest.
func sigstoreBundle(ctx context.Context, f Fetcher, img digest.Digest, d ocispec.Descriptor, p ImagePolicy, tr *root.TrustedRoot) error {
	raw, err := readAll(ctx, f, d)
	if err != nil {
		return err
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return fmt.Errorf("not a manifest: %w", err)
	}
	if m.Subject != nil && m.Subject.Digest != img {
		return fmt.Errorf("refers to %s, not this image", m.Subject.Digest)
	}
	if len(m.Layers) != 1 || m.Layers[0].MediaType != SigstoreBundleMediaType {
		return fmt.Errorf("want one layer of media type %s", SigstoreBundleMediaType)
	}
	body, err := readAll(ctx, f, m.Layers[0])
	if err != nil {
		return err
	}
	var b sgbundle.Bundle
	if err := b.UnmarshalJSON(body); err != nil {
		return fmt.Errorf("not a Sigstore bundle: %w", err)
	}
	if env, err := b.Envelope(); err == nil && env != nil {
		st, err := env.Statement()
		if err != nil {
			return fmt.Errorf("envelope: %w", err)
		}
		if st.GetPredicateType() != cosignSignPredicateType {
			return fmt.Errorf("an attestation of %q, not a signature (%s)", st.GetPredicateType(), cosignSignPredicateType)
		}
	}
	sum, err := hex.DecodeString(img.Encoded())
	if err != nil {
		return err
	}
	artifact := sgverify.WithArtifactDigest("sha256", sum)
	vc, err := b.VerificationContent()
	if err != nil {
		return err
	}
	if vc.PublicKey() != nil {
		if len(p.Keys) == 0 {
			return errors.New("signed with a key, and the policy names no key")
		}
		for _, k := range p.Keys {
			tm := root.NewTrustedPublicKeyMaterial(func(string) (root.TimeConstrainedVerifier, error) {
				return root.NewExpiringKey(k.Verifier, time.Time{}, time.Time{}), nil
			})
			v, err := sgverify.NewVerifier(tm, sgverify.WithNoObserverTimestamps())
			if err != nil {
				return err
			}
			if _, err := v.Verify(&b, sgverify.NewPolicy(artifact, sgverify.WithKey())); err == nil {
				return nil
			}
		}
		return errors.New("signature made by none of the keys, or not over this image")
	}
	if tr == nil {
		return errors.New("signed with a certificate, and the policy has no trusted root")
	}
	id, err := sgverify.NewShortCertificateIdentity(p.Issuer, "", p.Identity, "")
	if err != nil {
		return err
	}
	v, err := sgverify.NewVerifier(tr, sgverify.WithTransparencyLog(1), sgverify.WithObserverTimestamps(1))
	if err != nil {
		return err
	}
	_, err = v.Verify(&b, sgverify.NewPolicy(artifact, sgverify.WithCertificateIdentity(id)))
	return err
}
