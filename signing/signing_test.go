package signing_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/internal/testenv"
	"github.com/ferry-gitops/ferry/signing"
	"github.com/ferry-gitops/ferry/verify"
)

// keyPair makes a cosign key pair with the real cosign CLI.
func keyPair(t *testing.T) (priv, pub string) {
	t.Helper()
	bin, err := testenv.ToolPath("cosign")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cmd := exec.Command(bin, "generate-key-pair")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "COSIGN_PASSWORD=ferry", "HOME="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cosign generate-key-pair: %v\n%s", err, out)
	}
	return filepath.Join(dir, "cosign.key"), filepath.Join(dir, "cosign.pub")
}

// smallBundle writes a one-item bundle into a new layout and returns it, unsigned.
func smallBundle(t *testing.T, seq uint64) (*bundle.Layout, *bundle.Bundle, ocispec.Descriptor) {
	t.Helper()
	ctx := context.Background()
	l, err := bundle.NewLayout(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	push := func(mt string, b []byte) ocispec.Descriptor {
		d := ocispec.Descriptor{MediaType: mt, Digest: digest.FromBytes(b), Size: int64(len(b))}
		if err := l.Push(ctx, d, bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
		return d
	}
	m, _ := json.Marshal(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Config: push("application/vnd.cncf.flux.config.v1+json", []byte("{}")),
		Layers: []ocispec.Descriptor{push("application/vnd.cncf.flux.content.v1.tar+gzip", []byte("tree"))}})
	item := push(ocispec.MediaTypeImageManifest, m)
	now := time.Now().UTC()
	b := &bundle.Bundle{Sequence: seq, Created: now, Expires: now.Add(time.Hour),
		Items: []bundle.Item{{Name: "platform", Kind: bundle.KindGit, Source: "https://git.example/p.git", Revision: "abc", Descriptor: item}}}
	root, _, err := b.Descriptor()
	if err != nil {
		t.Fatal(err)
	}
	return l, b, root
}

func TestSignedRootVerifies(t *testing.T) {
	ctx := context.Background()
	priv, pub := keyPair(t)
	_, otherPub := keyPair(t)
	signer, err := signing.LoadKey(priv, []byte("ferry"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := signing.LoadKey(priv, []byte("wrong")); err == nil {
		t.Fatal("key loaded with the wrong password")
	}
	key, err := verify.LoadPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	other, err := verify.LoadPublicKey(otherPub)
	if err != nil {
		t.Fatal(err)
	}

	l, b, root := smallBundle(t, 1)
	sig, err := signing.Sign(ctx, l, root, signer)
	if err != nil {
		t.Fatal(err)
	}
	if sig.Annotations[ocispec.AnnotationRefName] != "sha256-"+root.Digest.Encoded()+".sig" {
		t.Fatalf("signature named %v", sig.Annotations)
	}
	written, err := bundle.Write(ctx, l, b, []ocispec.Descriptor{sig})
	if err != nil {
		t.Fatal(err)
	}
	res, err := bundle.ReadLayout(ctx, l.Dir())
	if err != nil {
		t.Fatal(err)
	}
	if written.Digest != root.Digest || len(res.Attachments) != 1 {
		t.Fatalf("root %s, %d attachments", written.Digest, len(res.Attachments))
	}
	if err := verify.RootSignature(ctx, l, res.Root, res.Attachments, []verify.Key{key}); err != nil {
		t.Fatalf("signed bundle does not verify: %v", err)
	}

	// Every way to fool it fails.
	if err := verify.RootSignature(ctx, l, res.Root, res.Attachments, []verify.Key{other}); !errors.Is(err, verify.ErrNoValidSignature) {
		t.Fatalf("verified with the wrong key: %v", err)
	}
	if err := verify.RootSignature(ctx, l, res.Root, nil, []verify.Key{key}); !errors.Is(err, verify.ErrNoValidSignature) {
		t.Fatalf("verified an unsigned bundle: %v", err)
	}
	// A signature over another bundle, moved onto this one.
	l2, _, root2 := smallBundle(t, 2)
	sig2, err := signing.Sign(ctx, l2, root2, signer)
	if err != nil {
		t.Fatal(err)
	}
	if err := verify.RootSignature(ctx, l2, res.Root, []ocispec.Descriptor{sig2}, []verify.Key{key}); !errors.Is(err, verify.ErrNoValidSignature) {
		t.Fatalf("verified a signature over another bundle: %v", err)
	} else {
		t.Logf("signature over another bundle refused: %v", err)
	}
}
