package verify_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/ferry-gitops/ferry/verify"
)

// mapFetcher serves blobs from memory.
type mapFetcher map[digest.Digest][]byte

func (m mapFetcher) Fetch(_ context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
	b, ok := m[d.Digest]
	if !ok {
		return nil, fmt.Errorf("no blob %s", d.Digest)
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

// FuzzRootSignature: whatever bytes an attacker puts in a signature manifest and its payload,
// the check never panics and never accepts without a real signature by the pinned key.
func FuzzRootSignature(f *testing.F) {
	key := ecdsaSigner(f, "ops")
	root := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: digest.FromString("root"), Size: 4}
	payload := []byte(`{"critical":{"identity":{"docker-reference":"ferry.local/bundle"},"image":{"docker-manifest-digest":"` + string(root.Digest) + `"},"type":"cosign container image signature"},"optional":null}`)
	manifest := func(p []byte, sig string) []byte {
		m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: ocispec.Descriptor{MediaType: "application/vnd.oci.image.config.v1+json", Digest: digest.FromString("{}"), Size: 2},
			Layers: []ocispec.Descriptor{{MediaType: verify.SimpleSigningMediaType, Digest: digest.FromBytes(p), Size: int64(len(p)),
				Annotations: map[string]string{verify.SignatureAnnotation: sig}}}}
		b, _ := json.Marshal(m)
		return b
	}
	f.Add(manifest(payload, "MEUCIQDx"), payload)
	f.Add([]byte(`{"layers":[{}]}`), []byte(`{}`))
	f.Fuzz(func(t *testing.T, m, p []byte) {
		store := mapFetcher{digest.FromBytes(m): m, digest.FromBytes(p): p}
		att := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(m), Size: int64(len(m))}
		if err := verify.RootSignature(context.Background(), store, root, []ocispec.Descriptor{att}, []verify.Key{key.key.Key}); err == nil {
			t.Fatalf("accepted a signature nobody made:\n%s\n%s", m, p)
		}
	})
}

// FuzzKeyStatement: a key statement parser that never panics and never trusts a key that the
// pinned keys did not sign for.
func FuzzKeyStatement(f *testing.F) {
	trusted := ecdsaSigner(f, "ops")
	other := ecdsaSigner(f, "other")
	pub, _ := other.sv.PublicKey()
	pem, _ := cryptoutils.MarshalPublicKeyToPEM(pub)
	good, _ := verify.SignStatement(verify.KeyStatement{Name: "next", PublicKey: string(pem)}, trusted.sv, "ops")
	raw, _ := json.Marshal(good)
	f.Add(raw)
	forged, _ := verify.SignStatement(verify.KeyStatement{Name: "next", PublicKey: string(pem)}, other.sv, "ops")
	raw, _ = json.Marshal(forged)
	f.Add(raw)
	f.Add([]byte(`{"statement":"e30=","signatures":[]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p := verify.Policy{Keys: []verify.TrustedKey{trusted.key}, Now: func() time.Time { return time.Unix(1_800_000_000, 0) }}
		k, err := p.Introduce(data)
		if err != nil {
			return
		}
		var s verify.SignedKeyStatement
		if json.Unmarshal(data, &s) != nil {
			t.Fatal("accepted a statement that is not JSON")
		}
		ok := false
		for _, sig := range s.Signatures {
			if sig.Signer == "ops" && trusted.sv.VerifySignature(bytes.NewReader(sig.Signature), bytes.NewReader(s.Statement)) == nil {
				ok = true
			}
		}
		if !ok {
			t.Fatalf("trusted key %q from a statement the pinned key did not sign", k.Name)
		}
	})
}
