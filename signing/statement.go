package signing

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ferry-gitops/ferry/verify"
)

// AttachKeyStatement pushes a manifest of artifact type verify.MediaTypeKeyStatement whose one
// layer is raw (a verify.SignedKeyStatement) and whose subject is root into dst, and returns its
// descriptor, ready to pass to bundle.Write as an attachment. The agent applies the statement once the bundle carrying it
// is accepted (docs/agent.md, "Key rotation").
func AttachKeyStatement(ctx context.Context, dst Pusher, root ocispec.Descriptor, raw []byte) (ocispec.Descriptor, error) {
	var s verify.SignedKeyStatement
	if err := json.Unmarshal(raw, &s); err != nil || len(s.Statement) == 0 {
		return ocispec.Descriptor{}, fmt.Errorf("key statement: not a signed statement (write one with 'mirror key-statement'): %v", err)
	}
	if err := push(ctx, dst, verify.MediaTypeKeyStatement, raw); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("key statement: %w", err)
	}
	empty := []byte("{}")
	if err := push(ctx, dst, ocispec.MediaTypeEmptyJSON, empty); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("key statement: %w", err)
	}
	m := ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: verify.MediaTypeKeyStatement,
		Config:       ocispec.Descriptor{MediaType: ocispec.MediaTypeEmptyJSON, Digest: digest.FromBytes(empty), Size: int64(len(empty))},
		Layers:       []ocispec.Descriptor{{MediaType: verify.MediaTypeKeyStatement, Digest: digest.FromBytes(raw), Size: int64(len(raw))}},
		Subject:      &ocispec.Descriptor{MediaType: root.MediaType, Digest: root.Digest, Size: root.Size},
	}
	mb, err := json.Marshal(m)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	if err := push(ctx, dst, ocispec.MediaTypeImageManifest, mb); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("key statement manifest: %w", err)
	}
	return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, ArtifactType: verify.MediaTypeKeyStatement, Digest: digest.FromBytes(mb), Size: int64(len(mb))}, nil
}
