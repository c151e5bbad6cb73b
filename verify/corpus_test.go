package verify_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/internal/testbundle"
	"github.com/ferry-gitops/ferry/signing"
	"github.com/ferry-gitops/ferry/verify"
)

// pinnedSigner is a key a test signs with, and its pinned public half.
type pinnedSigner struct {
	sv  signature.SignerVerifier
	key verify.TrustedKey
}

func ecdsaSigner(t testing.TB, name string) pinnedSigner {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sv, err := signature.LoadECDSASignerVerifier(k, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return pinnedSigner{sv, verify.TrustedKey{Key: verify.Key{Name: name, Verifier: sv}}}
}

func ed25519Signer(t testing.TB, name string) pinnedSigner {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sv, err := signature.LoadED25519SignerVerifier(k)
	if err != nil {
		t.Fatal(err)
	}
	return pinnedSigner{sv, verify.TrustedKey{Key: verify.Key{Name: name, Verifier: sv}}}
}

// by signs a root with each signer, in one cosign signature manifest.
func by(ss ...pinnedSigner) testbundle.SignFunc {
	return func(t testing.TB, l *bundle.Layout, root ocispec.Descriptor) []ocispec.Descriptor {
		var svs []signature.Signer
		for _, s := range ss {
			svs = append(svs, s.sv)
		}
		d, err := signing.Sign(context.Background(), l, root, svs...)
		if err != nil {
			t.Fatal(err)
		}
		return []ocispec.Descriptor{d}
	}
}

// agent is a minimal importer around verify: it stages every verified file, and only when the
// verdict is "accepted" moves them into its cache and writes its state. It is what the tests
// watch: a rejected bundle must leave cache and state byte for byte as they were.
type agent struct {
	dir    string
	policy verify.Policy
	n      int
}

func newAgent(t testing.TB, p verify.Policy) *agent {
	a := &agent{dir: t.TempDir(), policy: p}
	os.MkdirAll(filepath.Join(a.dir, "cache"), 0o755)
	return a
}

// state is what the agent stores of the last bundle it accepted (as the cache's state.json).
type state struct {
	Sequence uint64        `json:"sequence"`
	Root     digest.Digest `json:"root"`
}

func (a *agent) state(t testing.TB) state {
	var st state
	b, err := os.ReadFile(filepath.Join(a.dir, "state.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return st
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// read is one way to read a bundle from a medium, with the verifier's options.
type read func(opts ...bundle.ReadOption) (*bundle.Result, error)

func (a *agent) importBundle(t testing.TB, rd read) error {
	a.n++
	staging := filepath.Join(a.dir, fmt.Sprintf("staging-%d", a.n))
	if err := os.MkdirAll(staging, 0o755); err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(staging)
	stage := func(_ context.Context, e bundle.Entry, r io.Reader) error {
		f, err := os.Create(filepath.Join(staging, e.Descriptor.Digest.Encoded()))
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(f, r)
		return err
	}
	st := a.state(t)
	run := a.policy.Begin(st.Sequence, st.Root, stage)
	have := func(_ context.Context, d digest.Digest) (bool, error) {
		_, err := os.Stat(filepath.Join(a.dir, "cache", d.Encoded()))
		return err == nil, nil
	}
	res, err := rd(run.Options(bundle.WithHave(have))...)
	res, err = run.Finish(res, err)
	if err != nil {
		return err
	}
	entries, _ := os.ReadDir(staging)
	for _, e := range entries {
		if err := os.Rename(filepath.Join(staging, e.Name()), filepath.Join(a.dir, "cache", e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := json.Marshal(state{Sequence: res.Bundle.Sequence, Root: res.Root.Digest})
	if err := os.WriteFile(filepath.Join(a.dir, "state.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return nil
}

// snapshot is every file of the agent's cache and state, for byte-for-byte comparison.
func (a *agent) snapshot(t testing.TB) string {
	var parts []string
	filepath.WalkDir(a.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, _ := os.ReadFile(p)
		rel, _ := filepath.Rel(a.dir, p)
		parts = append(parts, rel+"="+string(digest.FromBytes(b)))
		return nil
	})
	sort.Strings(parts)
	return strings.Join(parts, "\n")
}

func fromDir(dir string) read {
	return func(opts ...bundle.ReadOption) (*bundle.Result, error) {
		return bundle.ReadLayout(context.Background(), dir, opts...)
	}
}

func fromTar(b []byte) read {
	return func(opts ...bundle.ReadOption) (*bundle.Result, error) {
		return bundle.ReadTar(context.Background(), bytes.NewReader(b), opts...)
	}
}

func fromParts(t testing.TB, tarball []byte, damage func(dir string, list *bundle.PartList)) read {
	dir := t.TempDir()
	list, err := bundle.Split(context.Background(), bytes.NewReader(tarball), dir, "b.tar", 4<<10)
	if err != nil {
		t.Fatal(err)
	}
	damage(dir, list)
	return func(opts ...bundle.ReadOption) (*bundle.Result, error) {
		root, err := os.OpenRoot(dir)
		if err != nil {
			return nil, err
		}
		defer root.Close()
		return bundle.ReadParts(context.Background(), root.FS(), bundle.PartListName("b.tar"), opts...)
	}
}

func editTar(t testing.TB, f *testbundle.Fixture, edit func([]testbundle.Entry) []testbundle.Entry) read {
	return fromTar(testbundle.JoinTar(t, edit(testbundle.SplitTar(t, f.Tar(t)))))
}

// TestHostileCorpus is the unit form of the hostile corpus, through verify alone with a minimal
// importer; the claim is carried by e2e/TestHostileCorpus, which runs these cases and more through
// cache.Import on all five media. Here each is refused by the expected check, leaving the minimal
// importer's cache and state untouched.
func TestHostileCorpus(t *testing.T) {
	ctx := context.Background()
	a1, a2, ed := ecdsaSigner(t, "ops-2026"), ecdsaSigner(t, "ops-backup"), ed25519Signer(t, "ops-ed25519")
	mallory := ecdsaSigner(t, "mallory")
	now := testbundle.Created.Add(time.Hour)
	basePolicy := verify.Policy{Keys: []verify.TrustedKey{a1.key, ed.key}, Now: func() time.Time { return now }}

	type setup struct {
		policy verify.Policy
		state  state // the state the agent is in before the hostile bundle
	}
	type hostile struct {
		name  string
		check bundle.Check
		item  string // what the rejection must name ("" for anything)
		make  func(t *testing.T, base *testbundle.Fixture, s *setup) read
	}
	// next is the bundle after base, signed by a1, unless edit says otherwise.
	next := func(t *testing.T, base *testbundle.Fixture, sign testbundle.SignFunc) *testbundle.Fixture {
		return testbundle.New(t, 2, base.Root.Digest, sign)
	}
	cases := []hostile{
		// Trust: signatures and keys.
		{"unsigned", bundle.CheckSignature, bundle.ItemRoot, func(t *testing.T, b *testbundle.Fixture, s *setup) read { return fromDir(next(t, b, nil).Dir) }},
		{"signed by an unknown key", bundle.CheckSignature, bundle.ItemRoot, func(t *testing.T, b *testbundle.Fixture, s *setup) read { return fromDir(next(t, b, by(mallory)).Dir) }},
		{"signed by a key carried in the bundle itself", bundle.CheckSignature, bundle.ItemRoot, func(t *testing.T, b *testbundle.Fixture, s *setup) read {
			f := next(t, b, by(mallory))
			pem, _ := json.Marshal("mallory's public key rides along")
			testbundle.Push(t, f.Layout, "application/vnd.ferry.key", pem)
			return fromDir(f.Dir)
		}},
		{"signature over another bundle, renamed onto this one", bundle.CheckSignature, bundle.ItemRoot, func(t *testing.T, b *testbundle.Fixture, s *setup) read {
			f := next(t, b, by(a1))
			other := testbundle.New(t, 3, b.Root.Digest, nil)
			sig, err := signing.Sign(ctx, f.Layout, other.Root, a1.sv)
			if err != nil {
				t.Fatal(err)
			}
			sig.Annotations[ocispec.AnnotationRefName] = bundle.SignatureTag(f.Root.Digest)
			if _, err := bundle.Write(ctx, f.Layout, f.Bundle, []ocispec.Descriptor{sig}); err != nil {
				t.Fatal(err)
			}
			return fromDir(f.Dir)
		}},
		{"root changed after signing", bundle.CheckSignature, bundle.ItemRoot, func(t *testing.T, b *testbundle.Fixture, s *setup) read {
			f := next(t, b, by(a1))
			sig := attachments(t, f)
			f.ForgeRoot(t, func(idx *ocispec.Index) { idx.Annotations[bundle.AnnotationExpires] = "2099-01-01T00:00:00Z" }, func(_ testing.TB, _ *bundle.Layout, root ocispec.Descriptor) []ocispec.Descriptor {
				moved := sig[0] // the old signature, renamed onto the new root
				moved.Annotations = map[string]string{ocispec.AnnotationRefName: bundle.SignatureTag(root.Digest)}
				return []ocispec.Descriptor{moved}
			})
			return fromDir(f.Dir)
		}},
		{"key past its validity window", bundle.CheckKeyWindow, bundle.ItemRoot, func(t *testing.T, b *testbundle.Fixture, s *setup) read {
			s.policy.Keys = []verify.TrustedKey{a1.key}
			s.policy.Keys[0].NotAfter = now.Add(-time.Minute)
			return fromDir(next(t, b, by(a1)).Dir)
		}},
		{"key not yet valid", bundle.CheckKeyWindow, bundle.ItemRoot, func(t *testing.T, b *testbundle.Fixture, s *setup) read {
			s.policy.Keys = []verify.TrustedKey{a1.key}
			s.policy.Keys[0].NotBefore = now.Add(time.Hour)
			return fromDir(next(t, b, by(a1)).Dir)
		}},
		{"threshold of two, one signature", bundle.CheckSignature, bundle.ItemRoot, func(t *testing.T, b *testbundle.Fixture, s *setup) read {
			s.policy.Keys, s.policy.Threshold = []verify.TrustedKey{a1.key, a2.key}, 2
			return fromDir(next(t, b, by(a1)).Dir)
		}},
		{"threshold of two, the same key twice", bundle.CheckSignature, bundle.ItemRoot, func(t *testing.T, b *testbundle.Fixture, s *setup) read {
			s.policy.Keys, s.policy.Threshold = []verify.TrustedKey{a1.key, a2.key}, 2
			return fromDir(next(t, b, by(a1, a1)).Dir)
		}},
		{"ed25519 signature by the wrong key", bundle.CheckSignature, bundle.ItemRoot, func(t *testing.T, b *testbundle.Fixture, s *setup) read {
			s.policy.Keys = []verify.TrustedKey{ed.key}
			return fromDir(next(t, b, by(ed25519Signer(t, "other-ed25519"))).Dir)
		}},
		// Freshness and order.
		{"expired bundle (freeze)", bundle.CheckExpired, bundle.ItemRoot, func(t *testing.T, b *testbundle.Fixture, s *setup) read {
			s.policy.Now = func() time.Time { return testbundle.Created.Add(31 * 24 * time.Hour) }
			return fromDir(next(t, b, by(a1)).Dir)
		}},
		{"rollback to an older sequence", bundle.CheckRollback, bundle.ItemRoot, func(t *testing.T, b *testbundle.Fixture, s *setup) read {
			s.state = state{Sequence: 5, Root: digest.FromString("five")}
			return fromDir(next(t, b, by(a1)).Dir)
		}},
		{"replay: an accepted sequence with other items", bundle.CheckReplay, bundle.ItemRoot, func(t *testing.T, b *testbundle.Fixture, s *setup) read {
			f := testbundle.New(t, 1, "", by(a1))
			f.Bundle.Items = f.Bundle.Items[:1]
			f.Write(t, by(a1))
			return fromDir(f.Dir)
		}},
		{"replay: an accepted sequence with a longer life", bundle.CheckReplay, bundle.ItemRoot, func(t *testing.T, b *testbundle.Fixture, s *setup) read {
			f := testbundle.New(t, 1, "", by(ed))
			f.Bundle.Expires = f.Bundle.Expires.Add(time.Hour)
			f.Write(t, by(ed))
			return fromDir(f.Dir)
		}},
		{"broken chain", bundle.CheckChain, bundle.ItemRoot, func(t *testing.T, b *testbundle.Fixture, s *setup) read {
			return fromDir(testbundle.New(t, 2, digest.FromString("not the last bundle"), by(a1)).Dir)
		}},
		{"delta against a base that was never accepted", bundle.CheckBase, bundle.ItemRoot, func(t *testing.T, b *testbundle.Fixture, s *setup) read {
			f := next(t, b, nil)
			f.ForgeRoot(t, func(idx *ocispec.Index) {
				idx.Annotations[bundle.AnnotationBase] = string(digest.FromString("some other base"))
			}, by(a1))
			return fromDir(f.Dir)
		}},
		// Content: tampering, completeness, confusion.
		{"tampered layer (directory)", bundle.CheckDigest, "app", func(t *testing.T, b *testbundle.Fixture, s *setup) read {
			f := next(t, b, by(a1))
			testbundle.Flip(t, f.BlobPath(f.Layer.Digest), 77)
			return fromDir(f.Dir)
		}},
		{"tampered manifest (directory)", bundle.CheckDigest, "app", func(t *testing.T, b *testbundle.Fixture, s *setup) read {
			f := next(t, b, by(a1))
			testbundle.Flip(t, f.BlobPath(f.Manifest.Digest), 40)
			return fromDir(f.Dir)
		}},
		{"tampered layer (tar)", bundle.CheckDigest, "app", func(t *testing.T, b *testbundle.Fixture, s *setup) read {
			f := next(t, b, by(a1))
			return editTar(t, f, func(es []testbundle.Entry) []testbundle.Entry {
				es[testbundle.Find(t, es, testbundle.BlobName(f.Layer.Digest))].Data[3] ^= 0x10
				return es
			})
		}},
		{"tampered signature", bundle.CheckDigest, bundle.ItemAttachment, func(t *testing.T, b *testbundle.Fixture, s *setup) read {
			f := next(t, b, by(a1))
			testbundle.Flip(t, f.BlobPath(attachments(t, f)[0].Digest), 60)
			return fromDir(f.Dir)
		}},
		{"missing layer", bundle.CheckMissing, "app", func(t *testing.T, b *testbundle.Fixture, s *setup) read {
			f := next(t, b, by(a1))
			os.Remove(f.BlobPath(f.Layer.Digest))
			return fromDir(f.Dir)
		}},
		{"layer longer than declared", bundle.CheckSize, "app", func(t *testing.T, b *testbundle.Fixture, s *setup) read {
			f := next(t, b, by(a1))
			p := f.BlobPath(f.Layer.Digest)
			data, _ := os.ReadFile(p)
			os.WriteFile(p, append(data, '!'), 0o644)
			return fromDir(f.Dir)
		}},
		{"image manifest declared an index (confusion)", bundle.CheckMediaType, "app", func(t *testing.T, b *testbundle.Fixture, s *setup) read {
			f := next(t, b, by(a1))
			f.ForgeRoot(t, func(idx *ocispec.Index) {
				for i, e := range idx.Manifests {
					if e.Annotations[bundle.AnnotationItemName] == "app" {
						idx.Manifests[i].MediaType = ocispec.MediaTypeImageIndex
					}
				}
			}, by(a1))
			fixIndexJSON(t, f, "app", ocispec.MediaTypeImageIndex)
			return fromDir(f.Dir)
		}},
		{"unknown format annotation, validly signed", bundle.CheckFormat, bundle.ItemRoot, func(t *testing.T, b *testbundle.Fixture, s *setup) read {
			f := next(t, b, by(a1))
			f.ForgeRoot(t, func(idx *ocispec.Index) { idx.Annotations["dev.ferry.bundle.trust-all"] = "true" }, by(a1))
			return fromDir(f.Dir)
		}},
		{"item named like a path, validly signed", bundle.CheckFormat, bundle.ItemRoot, func(t *testing.T, b *testbundle.Fixture, s *setup) read {
			f := next(t, b, by(a1))
			f.ForgeRoot(t, func(idx *ocispec.Index) { idx.Manifests[0].Annotations[bundle.AnnotationItemName] = "../../etc/cron.d" }, by(a1))
			return fromDir(f.Dir)
		}},
		{"referrer of a manifest not in the bundle", bundle.CheckMissing, "app", func(t *testing.T, b *testbundle.Fixture, s *setup) read {
			f := next(t, b, nil)
			ref := testbundle.Artifact(t, f.Layout, ocispec.MediaTypeImageConfig, map[string][]byte{"application/vnd.dev.cosign.simplesigning.v1+json": []byte("x")}, nil)
			f.Bundle.Items[0].Referrers = []bundle.Referrer{{Descriptor: ref, Subject: digest.FromString("elsewhere")}}
			root, _, _ := f.Bundle.Descriptor()
			idx, _ := bundle.LayoutIndex(root, f.Bundle, by(a1)(t, f.Layout, root))
			data, _ := f.Bundle.Marshal()
			testbundle.Push(t, f.Layout, ocispec.MediaTypeImageIndex, data)
			f.Layout.WriteIndex(idx)
			return fromDir(f.Dir)
		}},
		{"layer is a symbolic link", bundle.CheckPath, "app", func(t *testing.T, b *testbundle.Fixture, s *setup) read {
			f := next(t, b, by(a1))
			p := f.BlobPath(f.Layer.Digest)
			data, _ := os.ReadFile(p)
			outside := filepath.Join(t.TempDir(), "elsewhere")
			os.WriteFile(outside, data, 0o644)
			os.Remove(p)
			os.Symlink(outside, p)
			return fromDir(f.Dir)
		}},
		// Archives and parts.
		{"truncated tar, mid-layer", bundle.CheckTruncated, "", func(t *testing.T, b *testbundle.Fixture, s *setup) read {
			tb := next(t, b, by(a1)).Tar(t)
			return fromTar(tb[:len(tb)/2])
		}},
		{"truncated tar, early", bundle.CheckTruncated, "", func(t *testing.T, b *testbundle.Fixture, s *setup) read {
			tb := next(t, b, by(a1)).Tar(t)
			return fromTar(tb[:3000])
		}},
		{"truncated tar, last blob missing", bundle.CheckTruncated, "", func(t *testing.T, b *testbundle.Fixture, s *setup) read {
			f := next(t, b, by(a1))
			return editTar(t, f, func(es []testbundle.Entry) []testbundle.Entry { return es[:len(es)-1] })
		}},
		{"path traversal in a tar entry", bundle.CheckPath, "", func(t *testing.T, b *testbundle.Fixture, s *setup) read {
			return editTar(t, next(t, b, by(a1)), func(es []testbundle.Entry) []testbundle.Entry {
				evil := testbundle.Entry{Header: tar.Header{Typeflag: tar.TypeReg, Name: "blobs/sha256/../../../../tmp/ferry-pwned", Mode: 0o644}, Data: []byte("x")}
				return append(es[:4], append([]testbundle.Entry{evil}, es[4:]...)...)
			})
		}},
		{"absolute path in a tar entry", bundle.CheckPath, "", func(t *testing.T, b *testbundle.Fixture, s *setup) read {
			return editTar(t, next(t, b, by(a1)), func(es []testbundle.Entry) []testbundle.Entry {
				evil := testbundle.Entry{Header: tar.Header{Typeflag: tar.TypeReg, Name: "/etc/passwd", Mode: 0o644}, Data: []byte("x")}
				return append(es[:2], append([]testbundle.Entry{evil}, es[2:]...)...)
			})
		}},
		{"symbolic link entry in a tar", bundle.CheckPath, "", func(t *testing.T, b *testbundle.Fixture, s *setup) read {
			f := next(t, b, by(a1))
			return editTar(t, f, func(es []testbundle.Entry) []testbundle.Entry {
				i := testbundle.Find(t, es, testbundle.BlobName(f.Layer.Digest))
				es[i] = testbundle.Entry{Header: tar.Header{Typeflag: tar.TypeSymlink, Name: es[i].Header.Name, Linkname: "/etc/shadow"}}
				return es
			})
		}},
		{"hard link entry in a tar", bundle.CheckPath, "", func(t *testing.T, b *testbundle.Fixture, s *setup) read {
			f := next(t, b, by(a1))
			return editTar(t, f, func(es []testbundle.Entry) []testbundle.Entry {
				i := testbundle.Find(t, es, testbundle.BlobName(f.Layer.Digest))
				es[i] = testbundle.Entry{Header: tar.Header{Typeflag: tar.TypeLink, Name: es[i].Header.Name, Linkname: "oci-layout"}}
				return es
			})
		}},
		{"device entry in a tar", bundle.CheckPath, "", func(t *testing.T, b *testbundle.Fixture, s *setup) read {
			return editTar(t, next(t, b, by(a1)), func(es []testbundle.Entry) []testbundle.Entry {
				dev := testbundle.Entry{Header: tar.Header{Typeflag: tar.TypeBlock, Name: "blobs/sha256/sda", Devmajor: 8}}
				return append(es[:4], append([]testbundle.Entry{dev}, es[4:]...)...)
			})
		}},
		{"unreferenced blob smuggled into a tar", bundle.CheckUnexpect, "", func(t *testing.T, b *testbundle.Fixture, s *setup) read {
			return editTar(t, next(t, b, by(a1)), func(es []testbundle.Entry) []testbundle.Entry {
				extra := []byte("#!/bin/sh\nrm -rf /\n")
				return append(es, testbundle.Entry{Header: tar.Header{Typeflag: tar.TypeReg, Name: testbundle.BlobName(digest.FromBytes(extra)), Mode: 0o644}, Data: extra})
			})
		}},
		{"blob twice in a tar", bundle.CheckUnexpect, "app", func(t *testing.T, b *testbundle.Fixture, s *setup) read {
			f := next(t, b, by(a1))
			return editTar(t, f, func(es []testbundle.Entry) []testbundle.Entry {
				i := testbundle.Find(t, es, testbundle.BlobName(f.Layer.Digest))
				return append(es[:i+1], es[i:]...)
			})
		}},
		{"tar out of stream order", bundle.CheckOrder, "", func(t *testing.T, b *testbundle.Fixture, s *setup) read {
			return editTar(t, next(t, b, by(a1)), func(es []testbundle.Entry) []testbundle.Entry {
				sort.Slice(es, func(i, j int) bool { return es[i].Header.Name < es[j].Header.Name })
				return es
			})
		}},
		{"missing part", bundle.CheckPart, "b.tar.part-00002", func(t *testing.T, b *testbundle.Fixture, s *setup) read {
			return fromParts(t, next(t, b, by(a1)).Tar(t), func(dir string, l *bundle.PartList) { os.Remove(filepath.Join(dir, l.Parts[1].Name)) })
		}},
		{"duplicate part", bundle.CheckPart, "b.tar.part-00001", func(t *testing.T, b *testbundle.Fixture, s *setup) read {
			return fromParts(t, next(t, b, by(a1)).Tar(t), func(dir string, l *bundle.PartList) {
				l.Parts[1] = l.Parts[0]
				data, _ := l.Marshal()
				os.WriteFile(filepath.Join(dir, bundle.PartListName("b.tar")), data, 0o644)
			})
		}},
		{"damaged part", bundle.CheckPart, "b.tar.part-00003", func(t *testing.T, b *testbundle.Fixture, s *setup) read {
			return fromParts(t, next(t, b, by(a1)).Tar(t), func(dir string, l *bundle.PartList) { testbundle.Flip(t, filepath.Join(dir, l.Parts[2].Name), 100) })
		}},
		// Endless data: limits checked before parsing or hashing.
		{"blob over the size limit", bundle.CheckLimit, "app", func(t *testing.T, b *testbundle.Fixture, s *setup) read {
			s.policy.Limits = bundle.Limits{MaxBlobSize: 16 << 10}
			return fromDir(next(t, b, by(a1)).Dir)
		}},
		{"more blobs than the limit", bundle.CheckLimit, "", func(t *testing.T, b *testbundle.Fixture, s *setup) read {
			s.policy.Limits = bundle.Limits{MaxBlobs: 4}
			return fromDir(next(t, b, by(a1)).Dir)
		}},
		{"manifest over the limit", bundle.CheckLimit, "", func(t *testing.T, b *testbundle.Fixture, s *setup) read {
			s.policy.Limits = bundle.Limits{MaxManifestSize: 300}
			return fromDir(next(t, b, by(a1)).Dir)
		}},
		{"total size over the limit", bundle.CheckLimit, "", func(t *testing.T, b *testbundle.Fixture, s *setup) read {
			s.policy.Limits = bundle.Limits{MaxTotalSize: 8 << 10}
			return fromDir(next(t, b, by(a1)).Dir)
		}},
		// Time of check, time of use.
		{"blob swapped after the root was verified, before it was read", bundle.CheckDigest, "app", func(t *testing.T, b *testbundle.Fixture, s *setup) read {
			f := next(t, b, by(a1))
			return func(opts ...bundle.ReadOption) (*bundle.Result, error) {
				swap := func(e bundle.Entry) {
					if e.Item == "root" {
						testbundle.Flip(t, f.BlobPath(f.Layer.Digest), 5) // the medium changes under the reader
					}
				}
				return bundle.ReadLayout(context.Background(), f.Dir, append(opts, bundle.WithObserver(swap))...)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := &setup{policy: basePolicy}
			base := testbundle.New(t, 1, "", by(a1))
			// The agent has accepted the base bundle: its cache and state are not empty.
			seed := newAgent(t, basePolicy)
			if err := seed.importBundle(t, fromDir(base.Dir)); err != nil {
				t.Fatalf("base bundle refused: %v", err)
			}
			rd := c.make(t, base, s)
			if s.state == (state{}) {
				s.state = seed.state(t)
			} else {
				b, _ := json.Marshal(s.state)
				os.WriteFile(filepath.Join(seed.dir, "state.json"), b, 0o644)
			}
			seed.policy = s.policy
			before := seed.snapshot(t)
			err := seed.importBundle(t, rd)
			if err == nil {
				t.Fatal("accepted")
			}
			r, ok := bundle.AsError(err)
			if !ok {
				t.Fatalf("not a rejection: %v", err)
			}
			if r.Check != c.check {
				t.Fatalf("refused by check %q, want %q: %v", r.Check, c.check, err)
			}
			if c.item != "" && r.Item != c.item {
				t.Fatalf("names %q, want %q: %v", r.Item, c.item, err)
			}
			if !strings.HasPrefix(err.Error(), "bundle ") || !strings.Contains(err.Error(), " rejected: ") {
				t.Fatalf("message does not say which bundle was rejected: %v", err)
			}
			if after := seed.snapshot(t); after != before {
				t.Fatalf("cache or state changed by a rejected bundle:\nbefore:\n%s\nafter:\n%s", before, after)
			}
			t.Logf("%v", err)
		})
	}
	t.Logf("hostile corpus: %d bundles, each refused by its expected check, cache and state unchanged", len(cases))
	if len(cases) < 40 {
		t.Fatalf("the corpus has %d bundles; it must cover at least 40", len(cases))
	}
}

// attachments returns the signatures in a fixture's index.json.
func attachments(t testing.TB, f *testbundle.Fixture) []ocispec.Descriptor {
	res, err := bundle.ReadLayout(context.Background(), f.Dir)
	if err != nil {
		t.Fatal(err)
	}
	return res.Attachments
}

// fixIndexJSON makes index.json's entry for item agree with a forged root's media type.
func fixIndexJSON(t testing.TB, f *testbundle.Fixture, item, mediaType string) {
	p := filepath.Join(f.Dir, bundle.IndexFile)
	b, _ := os.ReadFile(p)
	var idx ocispec.Index
	json.Unmarshal(b, &idx)
	for i, m := range idx.Manifests {
		if m.Annotations[ocispec.AnnotationRefName] == item {
			idx.Manifests[i].MediaType = mediaType
		}
	}
	b, _ = json.Marshal(idx)
	if err := f.Layout.WriteIndex(b); err != nil {
		t.Fatal(err)
	}
}
