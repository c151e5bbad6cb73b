package e2e

import (
	"archive/tar"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/internal/testbundle"
	"github.com/ferry-gitops/ferry/signing"
	"github.com/ferry-gitops/ferry/verify"
)

func inDir(f *testbundle.Fixture) hostileBundle { return hostileBundle{dir: f.Dir} }

// tarEdit is a hostile tar: the fixture's tar, edited entry by entry.
func tarEdit(t testing.TB, f *testbundle.Fixture, edit func([]testbundle.Entry) []testbundle.Entry) hostileBundle {
	return hostileBundle{tar: testbundle.JoinTar(t, edit(testbundle.SplitTar(t, f.Tar(t))))}
}

// partsDamage is a genuine bundle's tar whose parts are damaged after splitting.
func partsDamage(f *testbundle.Fixture, t testing.TB, damage func(t testing.TB, dir string, l *bundle.PartList)) hostileBundle {
	return hostileBundle{tar: f.Tar(t), damageParts: damage}
}

// indexOf reads a fixture's index.json.
func indexOf(t testing.TB, f *testbundle.Fixture) ocispec.Index {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(f.Dir, bundle.IndexFile))
	if err != nil {
		t.Fatal(err)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatal(err)
	}
	return idx
}

// signatureOf returns the fixture's attachments from its index.json.
func signatureOf(t testing.TB, f *testbundle.Fixture) []ocispec.Descriptor {
	var out []ocispec.Descriptor
	for _, m := range indexOf(t, f).Manifests {
		if m.Annotations[ocispec.AnnotationRefName] != bundle.RootRef && !bundle.ValidName(m.Annotations[ocispec.AnnotationRefName]) {
			out = append(out, m)
		}
	}
	return out
}

// writeRaw writes f's root and index.json from f.Bundle, signed by sign, without reading the
// layout back (bundle.Write refuses an incomplete one).
func writeRaw(t testing.TB, f *testbundle.Fixture, sign testbundle.SignFunc) {
	t.Helper()
	root, data, err := f.Bundle.Descriptor()
	if err != nil {
		t.Fatal(err)
	}
	testbundle.Push(t, f.Layout, ocispec.MediaTypeImageIndex, data)
	var atts []ocispec.Descriptor
	if sign != nil {
		atts = sign(t, f.Layout, root)
	}
	idx, err := bundle.LayoutIndex(root, f.Bundle, atts)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Layout.WriteIndex(idx); err != nil {
		t.Fatal(err)
	}
	f.Root = root
}

// manifestJSON pushes a manifest built from its parts.
func manifestJSON(t testing.TB, l *bundle.Layout, config ocispec.Descriptor, layers []ocispec.Descriptor, subject *ocispec.Descriptor) ocispec.Descriptor {
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Config: config, Layers: layers, Subject: subject}
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return testbundle.Push(t, l, ocispec.MediaTypeImageManifest, raw)
}

// withAttachment rewrites index.json with extra attachments before the root (no checks).
func withAttachment(t testing.TB, f *testbundle.Fixture, extra ...ocispec.Descriptor) {
	rewriteIndexJSON(t, f, func(idx *ocispec.Index) {
		idx.Manifests = append(append([]ocispec.Descriptor(nil), extra...), idx.Manifests...)
	})
}

// corpus is the hostile corpus: every case runs through cache.Import on each medium it names.
func corpus() []corpusCase {
	ctx := context.Background()
	return []corpusCase{
		// Trust: signatures and keys.
		{"unsigned", onAll, bundle.CheckSignature, "", bundle.ItemRoot, func(t *testing.T, k *corpusKit) hostileBundle { return inDir(k.next(t, nil)) }},
		{"signed by an unknown key", onAll, bundle.CheckSignature, "", bundle.ItemRoot, func(t *testing.T, k *corpusKit) hostileBundle { return inDir(k.next(t, signedBy(k.mallory))) }},
		{"signed by a key carried in the bundle itself", onFiles, bundle.CheckSignature, "", bundle.ItemRoot, func(t *testing.T, k *corpusKit) hostileBundle {
			f := k.next(t, signedBy(k.mallory))
			pem, _ := json.Marshal("mallory's public key rides along")
			testbundle.Push(t, f.Layout, "application/vnd.ferry.key", pem)
			return inDir(f)
		}},
		{"signature over another bundle, renamed onto this one", onAll, bundle.CheckSignature, "", bundle.ItemRoot, func(t *testing.T, k *corpusKit) hostileBundle {
			f := k.next(t, signedBy(k.a1))
			other := testbundle.New(t, 4, k.last.Root.Digest, nil)
			sig, err := signing.Sign(ctx, f.Layout, other.Root, k.a1.sv)
			if err != nil {
				t.Fatal(err)
			}
			sig.Annotations[ocispec.AnnotationRefName] = bundle.SignatureTag(f.Root.Digest)
			if _, err := bundle.Write(ctx, f.Layout, f.Bundle, []ocispec.Descriptor{sig}); err != nil {
				t.Fatal(err)
			}
			return inDir(f)
		}},
		{"root changed after signing", onAll, bundle.CheckSignature, "", bundle.ItemRoot, func(t *testing.T, k *corpusKit) hostileBundle {
			f := k.next(t, signedBy(k.a1))
			sig := signatureOf(t, f)
			f.ForgeRoot(t, func(idx *ocispec.Index) { idx.Annotations[bundle.AnnotationExpires] = "2099-01-01T00:00:00Z" }, func(_ testing.TB, _ *bundle.Layout, root ocispec.Descriptor) []ocispec.Descriptor {
				moved := sig[0]
				moved.Annotations = map[string]string{ocispec.AnnotationRefName: bundle.SignatureTag(root.Digest)}
				return []ocispec.Descriptor{moved}
			})
			return inDir(f)
		}},
		{"key past its validity window", onAll, bundle.CheckKeyWindow, "", bundle.ItemRoot, func(t *testing.T, k *corpusKit) hostileBundle {
			k.policy.Keys = []verify.TrustedKey{k.a1.key}
			k.policy.Keys[0].NotAfter = k.now.Add(-time.Minute)
			return inDir(k.next(t, signedBy(k.a1)))
		}},
		{"key not yet valid", onAll, bundle.CheckKeyWindow, "", bundle.ItemRoot, func(t *testing.T, k *corpusKit) hostileBundle {
			k.policy.Keys = []verify.TrustedKey{k.a1.key}
			k.policy.Keys[0].NotBefore = k.now.Add(time.Hour)
			return inDir(k.next(t, signedBy(k.a1)))
		}},
		{"threshold of two, one signature", onAll, bundle.CheckSignature, "", bundle.ItemRoot, func(t *testing.T, k *corpusKit) hostileBundle {
			k.policy.Keys, k.policy.Threshold = []verify.TrustedKey{k.a1.key, k.a2.key}, 2
			return inDir(k.next(t, signedBy(k.a1)))
		}},
		{"threshold of two, one key signing twice", onAll, bundle.CheckSignature, "", bundle.ItemRoot, func(t *testing.T, k *corpusKit) hostileBundle {
			k.policy.Keys, k.policy.Threshold = []verify.TrustedKey{k.a1.key, k.a2.key}, 2
			return inDir(k.next(t, signedBy(k.a1, k.a1)))
		}},
		{"threshold of two, one key pinned under two names", onAll, bundle.CheckSignature, "", bundle.ItemRoot, func(t *testing.T, k *corpusKit) hostileBundle {
			twin := k.a1.key
			twin.Name = "/etc/ferry/keys/ops-2026-copy.pub"
			k.policy.Keys, k.policy.Threshold = []verify.TrustedKey{k.a1.key, twin}, 2
			return inDir(k.next(t, signedBy(k.a1)))
		}},
		{"ed25519 signature by the wrong key", onAll, bundle.CheckSignature, "", bundle.ItemRoot, func(t *testing.T, k *corpusKit) hostileBundle {
			k.policy.Keys = []verify.TrustedKey{k.ed.key}
			return inDir(k.next(t, signedBy(newPinned(t, "other-ed25519", true))))
		}},
		{"signature layer of another media type", onAll, bundle.CheckSignature, "", bundle.ItemRoot, func(t *testing.T, k *corpusKit) hostileBundle {
			// A valid cosign signature of the root, but its layer is not simple signing.
			f := k.next(t, nil)
			tmp := testbundle.New(t, 3, k.last.Root.Digest, nil)
			sig, err := signing.Sign(ctx, tmp.Layout, f.Root, k.a1.sv)
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := os.ReadFile(tmp.BlobPath(sig.Digest))
			var m ocispec.Manifest
			json.Unmarshal(raw, &m)
			for i, l := range m.Layers {
				body, _ := os.ReadFile(tmp.BlobPath(l.Digest))
				nl := testbundle.Push(t, f.Layout, "application/vnd.in-toto+json", body)
				nl.Annotations = l.Annotations
				m.Layers[i] = nl
			}
			cfg, _ := os.ReadFile(tmp.BlobPath(m.Config.Digest))
			testbundle.Push(t, f.Layout, m.Config.MediaType, cfg)
			raw, _ = json.Marshal(m)
			d := testbundle.Push(t, f.Layout, ocispec.MediaTypeImageManifest, raw)
			d.Annotations = map[string]string{ocispec.AnnotationRefName: bundle.SignatureTag(f.Root.Digest)}
			idx, err := bundle.LayoutIndex(f.Root, f.Bundle, []ocispec.Descriptor{d})
			if err != nil {
				t.Fatal(err)
			}
			f.Layout.WriteIndex(idx)
			return inDir(f)
		}},
		// Freshness and order.
		{"expired bundle (freeze)", onAll, bundle.CheckExpired, "", bundle.ItemRoot, func(t *testing.T, k *corpusKit) hostileBundle {
			k.policy.Now = func() time.Time { return testbundle.Created.Add(31 * 24 * time.Hour) }
			return inDir(k.next(t, signedBy(k.a1)))
		}},
		{"rollback to an older sequence", onAll, bundle.CheckRollback, "", bundle.ItemRoot, func(t *testing.T, k *corpusKit) hostileBundle {
			f := testbundle.New(t, 1, "", nil)
			f.Bundle.Items = f.Bundle.Items[:1]
			f.Write(t, signedBy(k.a1))
			return inDir(f)
		}},
		{"rollback: the first bundle again", onAll, bundle.CheckRollback, "", bundle.ItemRoot, func(t *testing.T, k *corpusKit) hostileBundle { return inDir(k.first) }},
		// The agent's own image: a newer bundle may not carry an older agent (design/agent-rollback.md).
		{"agent image older than the running agent", onAll, bundle.CheckAgentRollback, "", "ferry-sync", func(t *testing.T, k *corpusKit) hostileBundle {
			k.policy.AgentFloor = "v2.0.0"
			f := testbundle.New(t, 3, k.last.Root.Digest, nil)
			f.AddImage(t, "ferry-sync", signedBy(k.a1), testbundle.Platform{Platform: "linux/amd64", Labels: testbundle.AgentLabels("v1.9.9")})
			return inDir(f)
		}},
		{"agent image titled but without a version", onAll, bundle.CheckAgentRollback, "", "ferry-sync", func(t *testing.T, k *corpusKit) hostileBundle {
			f := testbundle.New(t, 3, k.last.Root.Digest, nil)
			f.AddImage(t, "ferry-sync", signedBy(k.a1), testbundle.Platform{Platform: "linux/amd64", Labels: map[string]string{verify.LabelTitle: verify.AgentTitle}})
			return inDir(f)
		}},
		{"replay: an accepted sequence with other items", onAll, bundle.CheckReplay, "", bundle.ItemRoot, func(t *testing.T, k *corpusKit) hostileBundle {
			f := testbundle.New(t, 2, k.first.Root.Digest, nil)
			f.Bundle.Items = f.Bundle.Items[:1]
			f.Write(t, signedBy(k.a1))
			return inDir(f)
		}},
		{"replay: an accepted sequence with a longer life", onAll, bundle.CheckReplay, "", bundle.ItemRoot, func(t *testing.T, k *corpusKit) hostileBundle {
			f := testbundle.New(t, 2, k.first.Root.Digest, nil)
			f.Bundle.Expires = f.Bundle.Expires.Add(time.Hour)
			f.Write(t, signedBy(k.ed))
			return inDir(f)
		}},
		{"broken chain", onAll, bundle.CheckChain, "", bundle.ItemRoot, func(t *testing.T, k *corpusKit) hostileBundle {
			return inDir(testbundle.New(t, 3, digest.FromString("not the last bundle"), signedBy(k.a1)))
		}},
		{"chain that skips the last bundle", onAll, bundle.CheckChain, "", bundle.ItemRoot, func(t *testing.T, k *corpusKit) hostileBundle {
			return inDir(testbundle.New(t, 3, k.first.Root.Digest, signedBy(k.a1)))
		}},
		{"delta against a base that was never accepted", onFiles, bundle.CheckBase, "", bundle.ItemRoot, func(t *testing.T, k *corpusKit) hostileBundle {
			f := k.next(t, nil)
			f.ForgeRoot(t, func(idx *ocispec.Index) {
				idx.Annotations[bundle.AnnotationBase] = string(digest.FromString("some other base"))
			}, signedBy(k.a1))
			return inDir(f)
		}},
		{"delta that claims a base blob it does not have", onFiles, bundle.CheckMissing, bundle.CheckTruncated, "extra", func(t *testing.T, k *corpusKit) hostileBundle {
			f := k.next(t, nil)
			extra := testbundle.Artifact(t, f.Layout, ocispec.MediaTypeImageConfig, map[string][]byte{ocispec.MediaTypeImageLayer: []byte("never held by the base")}, nil)
			f.Bundle.Items = append(f.Bundle.Items, bundle.Item{Name: "extra", Kind: bundle.KindArtifact, Source: "x", Revision: "1", Descriptor: extra})
			f.Bundle.Base = k.last.Root.Digest
			writeRaw(t, f, signedBy(k.a1))
			os.Remove(f.BlobPath(digest.FromBytes([]byte("never held by the base"))))
			return inDir(f)
		}},
		// Content: tampering, completeness, confusion.
		{"tampered layer", onFiles, bundle.CheckDigest, "", "app", func(t *testing.T, k *corpusKit) hostileBundle {
			f := k.next(t, signedBy(k.a1))
			testbundle.Flip(t, f.BlobPath(f.Layer.Digest), 77)
			return inDir(f)
		}},
		{"tampered manifest", onFiles, bundle.CheckDigest, "", "app", func(t *testing.T, k *corpusKit) hostileBundle {
			f := k.next(t, signedBy(k.a1))
			testbundle.Flip(t, f.BlobPath(f.Manifest.Digest), 40)
			return inDir(f)
		}},
		{"tampered root", onFiles, bundle.CheckDigest, "", bundle.ItemRoot, func(t *testing.T, k *corpusKit) hostileBundle {
			f := k.next(t, signedBy(k.a1))
			testbundle.Flip(t, f.BlobPath(f.Root.Digest), 30)
			return inDir(f)
		}},
		{"tampered layer in the tar stream", onStream, bundle.CheckDigest, "", "app", func(t *testing.T, k *corpusKit) hostileBundle {
			f := k.next(t, signedBy(k.a1))
			return tarEdit(t, f, func(es []testbundle.Entry) []testbundle.Entry {
				es[testbundle.Find(t, es, testbundle.BlobName(f.Layer.Digest))].Data[3] ^= 0x10
				return es
			})
		}},
		{"tampered signature", onFiles, bundle.CheckDigest, "", bundle.ItemAttachment, func(t *testing.T, k *corpusKit) hostileBundle {
			f := k.next(t, signedBy(k.a1))
			testbundle.Flip(t, f.BlobPath(signatureOf(t, f)[0].Digest), 60)
			return inDir(f)
		}},
		{"missing layer", onFiles, bundle.CheckMissing, bundle.CheckTruncated, "app", func(t *testing.T, k *corpusKit) hostileBundle {
			f := k.next(t, signedBy(k.a1))
			os.Remove(f.BlobPath(f.Layer.Digest))
			return inDir(f)
		}},
		{"missing root", onFiles, bundle.CheckMissing, bundle.CheckUnexpect, "", func(t *testing.T, k *corpusKit) hostileBundle {
			f := k.next(t, signedBy(k.a1))
			os.Remove(f.BlobPath(f.Root.Digest))
			return inDir(f)
		}},
		{"layer longer than declared", onFiles, bundle.CheckSize, "", "app", func(t *testing.T, k *corpusKit) hostileBundle {
			f := k.next(t, signedBy(k.a1))
			p := f.BlobPath(f.Layer.Digest)
			data, _ := os.ReadFile(p)
			os.WriteFile(p, append(data, '!'), 0o644)
			return inDir(f)
		}},
		{"layer shorter than declared", onFiles, bundle.CheckSize, "", "app", func(t *testing.T, k *corpusKit) hostileBundle {
			f := k.next(t, signedBy(k.a1))
			p := f.BlobPath(f.Layer.Digest)
			data, _ := os.ReadFile(p)
			os.WriteFile(p, data[:len(data)-10], 0o644)
			return inDir(f)
		}},
		{"image manifest declared an index (confusion)", onFiles, bundle.CheckMediaType, "", "app", func(t *testing.T, k *corpusKit) hostileBundle {
			f := k.next(t, signedBy(k.a1))
			f.ForgeRoot(t, func(idx *ocispec.Index) {
				for i, e := range idx.Manifests {
					if e.Annotations[bundle.AnnotationItemName] == "app" {
						idx.Manifests[i].MediaType = ocispec.MediaTypeImageIndex
					}
				}
			}, signedBy(k.a1))
			rewriteIndexJSON(t, f, func(idx *ocispec.Index) {
				for i, m := range idx.Manifests {
					if m.Annotations[ocispec.AnnotationRefName] == "app" {
						idx.Manifests[i].MediaType = ocispec.MediaTypeImageIndex
					}
				}
			})
			return inDir(f)
		}},
		{"unknown format annotation, validly signed", onFiles, bundle.CheckFormat, "", bundle.ItemRoot, func(t *testing.T, k *corpusKit) hostileBundle {
			f := k.next(t, signedBy(k.a1))
			f.ForgeRoot(t, func(idx *ocispec.Index) { idx.Annotations["dev.ferry.bundle.trust-all"] = "true" }, signedBy(k.a1))
			return inDir(f)
		}},
		{"item named like a path, validly signed", onFiles, bundle.CheckFormat, "", bundle.ItemRoot, func(t *testing.T, k *corpusKit) hostileBundle {
			f := k.next(t, signedBy(k.a1))
			f.ForgeRoot(t, func(idx *ocispec.Index) { idx.Manifests[0].Annotations[bundle.AnnotationItemName] = "../../etc/cron.d" }, signedBy(k.a1))
			return inDir(f)
		}},
		{"referrer of a manifest not in the bundle", onFiles, bundle.CheckMissing, "", "app", func(t *testing.T, k *corpusKit) hostileBundle {
			f := k.next(t, nil)
			ref := testbundle.Artifact(t, f.Layout, ocispec.MediaTypeImageConfig, map[string][]byte{verify.SimpleSigningMediaType: []byte("x")}, nil)
			f.Bundle.Items[0].Referrers = []bundle.Referrer{{Descriptor: ref, Subject: digest.FromString("elsewhere")}}
			root, _, _ := f.Bundle.Descriptor()
			idx, _ := bundle.LayoutIndex(root, f.Bundle, signedBy(k.a1)(t, f.Layout, root))
			data, _ := f.Bundle.Marshal()
			testbundle.Push(t, f.Layout, ocispec.MediaTypeImageIndex, data)
			f.Layout.WriteIndex(idx)
			return inDir(f)
		}},
		{"layer is a symbolic link", onDir, bundle.CheckPath, "", "app", func(t *testing.T, k *corpusKit) hostileBundle {
			f := k.next(t, signedBy(k.a1))
			p := f.BlobPath(f.Layer.Digest)
			data, _ := os.ReadFile(p)
			outside := filepath.Join(t.TempDir(), "elsewhere")
			os.WriteFile(outside, data, 0o644)
			os.Remove(p)
			os.Symlink(outside, p)
			return inDir(f)
		}},
		{"index.json is a symbolic link", onDir, bundle.CheckPath, "", bundle.IndexFile, func(t *testing.T, k *corpusKit) hostileBundle {
			f := k.next(t, signedBy(k.a1))
			p := filepath.Join(f.Dir, bundle.IndexFile)
			outside := filepath.Join(t.TempDir(), "index.json")
			data, _ := os.ReadFile(p)
			os.WriteFile(outside, data, 0o644)
			os.Remove(p)
			os.Symlink(outside, p)
			return inDir(f)
		}},
		// The root arrives only as the root; nothing of an item before the trust decision.
		{"root disguised as an attachment (unsigned)", onFiles, bundle.CheckFormat, "", bundle.ItemRoot, func(t *testing.T, k *corpusKit) hostileBundle {
			f := k.next(t, nil)
			withAttachment(t, f, f.Root)
			return inDir(f)
		}},
		{"root disguised as a signature-tagged attachment", onFiles, bundle.CheckFormat, "", bundle.ItemRoot, func(t *testing.T, k *corpusKit) hostileBundle {
			f := k.next(t, nil)
			d := f.Root
			d.Annotations = map[string]string{ocispec.AnnotationRefName: bundle.SignatureTag(f.Root.Digest)}
			withAttachment(t, f, d)
			return inDir(f)
		}},
		{"root listed again as an item entry", onFiles, bundle.CheckFormat, "", bundle.ItemRoot, func(t *testing.T, k *corpusKit) hostileBundle {
			f := k.next(t, signedBy(k.a1))
			rewriteIndexJSON(t, f, func(idx *ocispec.Index) {
				d := f.Root
				d.Annotations = map[string]string{ocispec.AnnotationRefName: "zzz"}
				idx.Manifests = append(idx.Manifests, d)
			})
			return inDir(f)
		}},
		{"index.json lists two roots", onFiles, bundle.CheckFormat, "", bundle.IndexFile, func(t *testing.T, k *corpusKit) hostileBundle {
			f := k.next(t, signedBy(k.a1))
			other := testbundle.New(t, 9, k.last.Root.Digest, nil)
			raw, _ := os.ReadFile(other.BlobPath(other.Root.Digest))
			testbundle.Push(t, f.Layout, ocispec.MediaTypeImageIndex, raw)
			rewriteIndexJSON(t, f, func(idx *ocispec.Index) {
				d := other.Root
				d.Annotations = map[string]string{ocispec.AnnotationRefName: bundle.RootRef}
				idx.Manifests = append([]ocispec.Descriptor{d}, idx.Manifests...)
			})
			return inDir(f)
		}},
		{"attachment listed twice", onFiles, bundle.CheckFormat, "", bundle.ItemAttachment, func(t *testing.T, k *corpusKit) hostileBundle {
			f := k.next(t, signedBy(k.a1))
			withAttachment(t, f, signatureOf(t, f)[0])
			return inDir(f)
		}},
		{"attachment that carries the root as a layer", onFiles, bundle.CheckFormat, "", bundle.ItemRoot, func(t *testing.T, k *corpusKit) hostileBundle {
			f := k.next(t, nil)
			cfg := testbundle.Push(t, f.Layout, "application/vnd.dev.cosign.artifact.sig.v1+json", []byte(`{"sig":1}`))
			root := f.Root
			root.Annotations, root.ArtifactType = nil, ""
			att := manifestJSON(t, f.Layout, cfg, []ocispec.Descriptor{root}, &f.Root)
			withAttachment(t, f, att)
			return inDir(f)
		}},
		{"attachment that carries an item's layer (mix and match)", onFiles, bundle.CheckFormat, "", "app", func(t *testing.T, k *corpusKit) hostileBundle {
			f := k.next(t, signedBy(k.a1))
			cfg := testbundle.Push(t, f.Layout, "application/vnd.dev.cosign.artifact.sig.v1+json", []byte(`{"sig":2}`))
			att := manifestJSON(t, f.Layout, cfg, []ocispec.Descriptor{f.Layer}, &f.Root)
			withAttachment(t, f, att)
			return inDir(f)
		}},
		{"attachment of a layer media type", onFiles, bundle.CheckMediaType, "", bundle.ItemAttachment, func(t *testing.T, k *corpusKit) hostileBundle {
			f := k.next(t, signedBy(k.a1))
			blob := testbundle.Push(t, f.Layout, ocispec.MediaTypeImageLayer, []byte("not a manifest"))
			withAttachment(t, f, blob)
			return inDir(f)
		}},
		{"attachment for another root, untagged", onFiles, bundle.CheckFormat, "", bundle.ItemAttachment, func(t *testing.T, k *corpusKit) hostileBundle {
			f := k.next(t, signedBy(k.a1))
			other := digest.FromString("another root")
			cfg := testbundle.Push(t, f.Layout, "application/vnd.dev.cosign.artifact.sig.v1+json", []byte(`{"sig":3}`))
			att := manifestJSON(t, f.Layout, cfg, nil, &ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: other, Size: 10})
			withAttachment(t, f, att)
			return inDir(f)
		}},
		{"attachments declaring more than the pre-trust limit (endless data)", onFiles, bundle.CheckLimit, "", bundle.ItemAttachment, func(t *testing.T, k *corpusKit) hostileBundle {
			f := k.next(t, nil)
			cfg := testbundle.Push(t, f.Layout, "application/vnd.dev.cosign.artifact.sig.v1+json", []byte(`{"sig":4}`))
			huge := ocispec.Descriptor{MediaType: verify.SimpleSigningMediaType, Digest: digest.FromString("five MiB that never come"), Size: bundle.MaxAttachmentBytes + 1}
			att := manifestJSON(t, f.Layout, cfg, []ocispec.Descriptor{huge}, &f.Root)
			withAttachment(t, f, att)
			return inDir(f)
		}},
		{"more attachments than the limit", onFiles, bundle.CheckLimit, "", bundle.IndexFile, func(t *testing.T, k *corpusKit) hostileBundle {
			f := k.next(t, nil)
			var atts []ocispec.Descriptor
			for i := range bundle.DefaultMaxAttachments + 1 {
				cfg := testbundle.Push(t, f.Layout, "application/vnd.dev.cosign.artifact.sig.v1+json", []byte(strings.Repeat("s", i+1)))
				atts = append(atts, manifestJSON(t, f.Layout, cfg, nil, &f.Root))
			}
			withAttachment(t, f, atts...)
			return inDir(f)
		}},
		{"mix and match: an item of another validly signed bundle", onFiles, bundle.CheckFormat, "", "app", func(t *testing.T, k *corpusKit) hostileBundle {
			f := k.next(t, signedBy(k.a1))
			other := testbundle.New(t, 3, k.last.Root.Digest, nil)
			other.Bundle.Items[0].Descriptor = testbundle.Artifact(t, other.Layout, ocispec.MediaTypeImageConfig, map[string][]byte{ocispec.MediaTypeImageLayer: []byte("mallory's app")}, nil)
			other.Write(t, signedBy(k.a1))
			for _, d := range []digest.Digest{other.Bundle.Items[0].Descriptor.Digest} {
				raw, _ := os.ReadFile(other.BlobPath(d))
				testbundle.Push(t, f.Layout, ocispec.MediaTypeImageManifest, raw)
			}
			var m ocispec.Manifest
			raw, _ := os.ReadFile(other.BlobPath(other.Bundle.Items[0].Descriptor.Digest))
			json.Unmarshal(raw, &m)
			for _, d := range append([]ocispec.Descriptor{m.Config}, m.Layers...) {
				b, _ := os.ReadFile(other.BlobPath(d.Digest))
				testbundle.Push(t, f.Layout, d.MediaType, b)
			}
			rewriteIndexJSON(t, f, func(idx *ocispec.Index) {
				for i, e := range idx.Manifests {
					if e.Annotations[ocispec.AnnotationRefName] == "app" {
						d := other.Bundle.Items[0].Descriptor
						d.Annotations = e.Annotations
						idx.Manifests[i] = d
					}
				}
			})
			return inDir(f)
		}},
		{"mix and match: the root of one bundle with the signature of another", onFiles, bundle.CheckSignature, "", bundle.ItemRoot, func(t *testing.T, k *corpusKit) hostileBundle {
			f := k.next(t, nil)
			other := testbundle.New(t, 3, k.last.Root.Digest, signedBy(k.a1))
			other.Bundle.Items = other.Bundle.Items[:1]
			other.Write(t, signedBy(k.a1))
			sig := signatureOf(t, other)[0]
			raw, _ := os.ReadFile(other.BlobPath(sig.Digest))
			var m ocispec.Manifest
			json.Unmarshal(raw, &m)
			testbundle.Push(t, f.Layout, sig.MediaType, raw)
			for _, d := range append([]ocispec.Descriptor{m.Config}, m.Layers...) {
				b, _ := os.ReadFile(other.BlobPath(d.Digest))
				testbundle.Push(t, f.Layout, d.MediaType, b)
			}
			sig.Annotations = map[string]string{ocispec.AnnotationRefName: bundle.SignatureTag(f.Root.Digest)}
			withAttachment(t, f, sig)
			return inDir(f)
		}},
		{"item layer declaring an endless size", onFiles, bundle.CheckLimit, "", "app", func(t *testing.T, k *corpusKit) hostileBundle {
			f := k.next(t, nil)
			cfg := testbundle.Push(t, f.Layout, ocispec.MediaTypeImageConfig, []byte("{}"))
			endless := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: digest.FromString("endless"), Size: 1 << 62}
			f.Bundle.Items[0].Descriptor = manifestJSON(t, f.Layout, cfg, []ocispec.Descriptor{endless}, nil)
			writeRaw(t, f, signedBy(k.a1))
			return inDir(f)
		}},
		// Archives and parts.
		{"truncated tar, mid-layer", onStream, bundle.CheckTruncated, "", "", func(t *testing.T, k *corpusKit) hostileBundle {
			tb := k.next(t, signedBy(k.a1)).Tar(t)
			return hostileBundle{tar: tb[:len(tb)/2]}
		}},
		{"truncated tar, early", onStream, bundle.CheckTruncated, "", "", func(t *testing.T, k *corpusKit) hostileBundle {
			return hostileBundle{tar: k.next(t, signedBy(k.a1)).Tar(t)[:3000]}
		}},
		{"truncated tar, last blob missing", onStream, bundle.CheckTruncated, "", "", func(t *testing.T, k *corpusKit) hostileBundle {
			return tarEdit(t, k.next(t, signedBy(k.a1)), func(es []testbundle.Entry) []testbundle.Entry { return es[:len(es)-1] })
		}},
		{"path traversal in a tar entry", onStream, bundle.CheckPath, "", "", func(t *testing.T, k *corpusKit) hostileBundle {
			return tarEdit(t, k.next(t, signedBy(k.a1)), func(es []testbundle.Entry) []testbundle.Entry {
				evil := testbundle.Entry{Header: tar.Header{Typeflag: tar.TypeReg, Name: "blobs/sha256/../../../../tmp/ferry-pwned", Mode: 0o644}, Data: []byte("x")}
				return append(es[:4], append([]testbundle.Entry{evil}, es[4:]...)...)
			})
		}},
		{"absolute path in a tar entry", onStream, bundle.CheckPath, "", "", func(t *testing.T, k *corpusKit) hostileBundle {
			return tarEdit(t, k.next(t, signedBy(k.a1)), func(es []testbundle.Entry) []testbundle.Entry {
				evil := testbundle.Entry{Header: tar.Header{Typeflag: tar.TypeReg, Name: "/etc/passwd", Mode: 0o644}, Data: []byte("x")}
				return append(es[:2], append([]testbundle.Entry{evil}, es[2:]...)...)
			})
		}},
		{"symbolic link entry in a tar", onStream, bundle.CheckPath, "", "", func(t *testing.T, k *corpusKit) hostileBundle {
			f := k.next(t, signedBy(k.a1))
			return tarEdit(t, f, func(es []testbundle.Entry) []testbundle.Entry {
				i := testbundle.Find(t, es, testbundle.BlobName(f.Layer.Digest))
				es[i] = testbundle.Entry{Header: tar.Header{Typeflag: tar.TypeSymlink, Name: es[i].Header.Name, Linkname: "/etc/shadow"}}
				return es
			})
		}},
		{"hard link entry in a tar", onStream, bundle.CheckPath, "", "", func(t *testing.T, k *corpusKit) hostileBundle {
			f := k.next(t, signedBy(k.a1))
			return tarEdit(t, f, func(es []testbundle.Entry) []testbundle.Entry {
				i := testbundle.Find(t, es, testbundle.BlobName(f.Layer.Digest))
				es[i] = testbundle.Entry{Header: tar.Header{Typeflag: tar.TypeLink, Name: es[i].Header.Name, Linkname: "oci-layout"}}
				return es
			})
		}},
		{"device entry in a tar", onStream, bundle.CheckPath, "", "", func(t *testing.T, k *corpusKit) hostileBundle {
			return tarEdit(t, k.next(t, signedBy(k.a1)), func(es []testbundle.Entry) []testbundle.Entry {
				dev := testbundle.Entry{Header: tar.Header{Typeflag: tar.TypeBlock, Name: "blobs/sha256/sda", Devmajor: 8}}
				return append(es[:4], append([]testbundle.Entry{dev}, es[4:]...)...)
			})
		}},
		{"unreferenced blob smuggled into a tar", onStream, bundle.CheckUnexpect, "", "", func(t *testing.T, k *corpusKit) hostileBundle {
			return tarEdit(t, k.next(t, signedBy(k.a1)), func(es []testbundle.Entry) []testbundle.Entry {
				extra := []byte("#!/bin/sh\nrm -rf /\n")
				return append(es, testbundle.Entry{Header: tar.Header{Typeflag: tar.TypeReg, Name: testbundle.BlobName(digest.FromBytes(extra)), Mode: 0o644}, Data: extra})
			})
		}},
		{"blob twice in a tar", onStream, bundle.CheckUnexpect, "", "app", func(t *testing.T, k *corpusKit) hostileBundle {
			f := k.next(t, signedBy(k.a1))
			return tarEdit(t, f, func(es []testbundle.Entry) []testbundle.Entry {
				i := testbundle.Find(t, es, testbundle.BlobName(f.Layer.Digest))
				return append(es[:i+1], es[i:]...)
			})
		}},
		{"tar out of stream order", onStream, bundle.CheckOrder, "", "", func(t *testing.T, k *corpusKit) hostileBundle {
			return tarEdit(t, k.next(t, signedBy(k.a1)), func(es []testbundle.Entry) []testbundle.Entry {
				sort.Slice(es, func(i, j int) bool { return es[i].Header.Name < es[j].Header.Name })
				return es
			})
		}},
		{"item blobs before the root in a tar (read before trust)", onStream, bundle.CheckUnexpect, "", "", func(t *testing.T, k *corpusKit) hostileBundle {
			f := k.next(t, nil)
			return tarEdit(t, f, func(es []testbundle.Entry) []testbundle.Entry {
				i := testbundle.Find(t, es, testbundle.BlobName(f.Layer.Digest))
				layer := es[i]
				es = append(es[:i], es[i+1:]...)
				return append(es[:4], append([]testbundle.Entry{layer}, es[4:]...)...)
			})
		}},
		{"tar entry declaring an endless size", onStream, bundle.CheckSize, "", "app", func(t *testing.T, k *corpusKit) hostileBundle {
			f := k.next(t, signedBy(k.a1))
			es := testbundle.SplitTar(t, f.Tar(t))
			i := testbundle.Find(t, es, testbundle.BlobName(f.Layer.Digest))
			es = es[:i+1]
			es[i].Data = nil
			tb := testbundle.JoinTar(t, es)
			// The header's size field claims far more than follows: the reader refuses on the size
			// it declares, before reading it.
			return hostileBundle{tar: patchTarSize(t, tb, es[i].Header.Name, 0o77777777777)}
		}},
		{"oci-layout over its size", onFiles, bundle.CheckLimit, "", bundle.LayoutFile, func(t *testing.T, k *corpusKit) hostileBundle {
			f := k.next(t, signedBy(k.a1))
			os.WriteFile(filepath.Join(f.Dir, bundle.LayoutFile), []byte(`{"imageLayoutVersion":"1.0.0"`+strings.Repeat(" ", 4096)+`}`), 0o644)
			return inDir(f)
		}},
		{"index.json over the manifest limit", onFiles, bundle.CheckLimit, "", bundle.IndexFile, func(t *testing.T, k *corpusKit) hostileBundle {
			f := k.next(t, signedBy(k.a1))
			k.policy.Limits = bundle.Limits{MaxManifestSize: 512}
			return inDir(f)
		}},
		{"missing part", onParts | onS3, bundle.CheckPart, "", "b.tar.part-00002", func(t *testing.T, k *corpusKit) hostileBundle {
			return partsDamage(k.next(t, signedBy(k.a1)), t, func(t testing.TB, dir string, l *bundle.PartList) { os.Remove(filepath.Join(dir, l.Parts[1].Name)) })
		}},
		{"duplicate part", onParts | onS3, bundle.CheckPart, "", "b.tar.part-00001", func(t *testing.T, k *corpusKit) hostileBundle {
			return partsDamage(k.next(t, signedBy(k.a1)), t, func(t testing.TB, dir string, l *bundle.PartList) {
				l.Parts[1] = l.Parts[0]
				data, _ := l.Marshal()
				os.WriteFile(filepath.Join(dir, bundle.PartListName("b.tar")), data, 0o644)
			})
		}},
		{"damaged part", onParts | onS3, bundle.CheckPart, "", "b.tar.part-00003", func(t *testing.T, k *corpusKit) hostileBundle {
			return partsDamage(k.next(t, signedBy(k.a1)), t, func(t testing.TB, dir string, l *bundle.PartList) {
				testbundle.Flip(t, filepath.Join(dir, l.Parts[2].Name), 100)
			})
		}},
		{"part longer than listed", onParts | onS3, bundle.CheckPart, "", "b.tar.part-00002", func(t *testing.T, k *corpusKit) hostileBundle {
			return partsDamage(k.next(t, signedBy(k.a1)), t, func(t testing.TB, dir string, l *bundle.PartList) {
				p := filepath.Join(dir, l.Parts[1].Name)
				b, _ := os.ReadFile(p)
				os.WriteFile(p, append(b, make([]byte, 1<<20)...), 0o644)
			})
		}},
		{"missing part list", onParts | onS3, bundle.CheckMissing, "", "", func(t *testing.T, k *corpusKit) hostileBundle {
			return partsDamage(k.next(t, signedBy(k.a1)), t, func(t testing.TB, dir string, l *bundle.PartList) {
				os.Remove(filepath.Join(dir, bundle.PartListName("b.tar")))
			})
		}},
		// Endless data: limits checked before parsing or hashing.
		{"blob over the size limit", onAll, bundle.CheckLimit, "", "app", func(t *testing.T, k *corpusKit) hostileBundle {
			k.policy.Limits = bundle.Limits{MaxBlobSize: 16 << 10}
			return inDir(k.next(t, signedBy(k.a1)))
		}},
		{"more blobs than the limit", onAll, bundle.CheckLimit, "", "", func(t *testing.T, k *corpusKit) hostileBundle {
			k.policy.Limits = bundle.Limits{MaxBlobs: 4}
			return inDir(k.next(t, signedBy(k.a1)))
		}},
		{"manifest over the limit", onAll, bundle.CheckLimit, "", "", func(t *testing.T, k *corpusKit) hostileBundle {
			k.policy.Limits = bundle.Limits{MaxManifestSize: 300}
			return inDir(k.next(t, signedBy(k.a1)))
		}},
		{"total size over the limit", onAll, bundle.CheckLimit, "", "", func(t *testing.T, k *corpusKit) hostileBundle {
			k.policy.Limits = bundle.Limits{MaxTotalSize: 8 << 10}
			return inDir(k.next(t, signedBy(k.a1)))
		}},
		// The disk fails: the commit of a genuine bundle finds no room for its journal. The
		// import is undone through the journal's recovery, nothing changes, and the same cache
		// accepts the next bundle once space is freed.
		{"failed commit: the cache's disk full at the journal (real tmpfs)", onAll, "", "", "", func(t *testing.T, k *corpusKit) hostileBundle {
			return hostileBundle{dir: k.next(t, signedBy(k.a1)).Dir, commitOnFullDisk: true}
		}},
		// The medium fails: no verdict on the bundle, and nothing changes.
		{"registry connection cut mid-layer (truncated stream)", onRegistry, "", "", "", func(t *testing.T, k *corpusKit) hostileBundle {
			return hostileBundle{dir: k.next(t, signedBy(k.a1)).Dir, fault: throughRegistryFault(6<<10, false), mediumFailure: true}
		}},
		{"registry stalls mid-stream (slow retrieval), import under a deadline", onRegistry, "", "", "", func(t *testing.T, k *corpusKit) hostileBundle {
			return hostileBundle{dir: k.next(t, signedBy(k.a1)).Dir, fault: throughRegistryFault(6<<10, true), mediumFailure: true, timeout: 3 * time.Second}
		}},
		{"bucket connection cut mid-read (truncated stream)", onS3, "", "", "", func(t *testing.T, k *corpusKit) hostileBundle {
			return hostileBundle{dir: k.next(t, signedBy(k.a1)).Dir, fault: throughS3Fault(3<<10, false), mediumFailure: true}
		}},
		{"bucket stalls mid-read (slow retrieval), import under a deadline", onS3, "", "", "", func(t *testing.T, k *corpusKit) hostileBundle {
			return hostileBundle{dir: k.next(t, signedBy(k.a1)).Dir, fault: throughS3Fault(3<<10, true), mediumFailure: true, timeout: 3 * time.Second}
		}},
		// Time of check, time of use.
		{"blob swapped after the root was verified, before it was read", onDir, bundle.CheckDigest, "", "app", func(t *testing.T, k *corpusKit) hostileBundle {
			f := k.next(t, signedBy(k.a1))
			return hostileBundle{dir: f.Dir, observe: func(e bundle.Entry) {
				if e.Item == bundle.ItemRoot {
					testbundle.Flip(t, f.BlobPath(f.Layer.Digest), 5) // the medium changes under the reader
				}
			}}
		}},
	}
}
