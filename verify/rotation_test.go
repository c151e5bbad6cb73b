package verify_test

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/cache"
	"github.com/ferry-gitops/ferry/internal/testbundle"
	"github.com/ferry-gitops/ferry/medium"
	"github.com/ferry-gitops/ferry/signing"
	"github.com/ferry-gitops/ferry/verify"
)

// rotImport imports the bundle laid out in dir into c through the medium reader, as sync does.
func rotImport(t *testing.T, c *cache.Cache, dir string, p verify.Policy) (*cache.ImportResult, error) {
	t.Helper()
	ctx := context.Background()
	return c.Import(ctx, func(opts ...bundle.ReadOption) (*bundle.Result, error) {
		return medium.Read(ctx, medium.Layout(dir), medium.WithReadOptions(opts...))
	}, p)
}

// signedWith signs the root with signers and attaches the key statements.
func signedWith(signers []*testbundle.Signer, statements ...[]byte) testbundle.SignFunc {
	return func(t testing.TB, l *bundle.Layout, root ocispec.Descriptor) []ocispec.Descriptor {
		var atts []ocispec.Descriptor
		for _, s := range signers {
			atts = append(atts, s.Sign(t, l, root)...)
		}
		for _, raw := range statements {
			d, err := signing.AttachKeyStatement(context.Background(), l, root, raw)
			if err != nil {
				t.Fatal(err)
			}
			atts = append(atts, d)
		}
		return atts
	}
}

// statement is a key statement about subject, signed by each of by.
func statement(t *testing.T, name string, subject *testbundle.Signer, revoke bool, by ...*testbundle.Signer) []byte {
	t.Helper()
	body, err := json.Marshal(verify.KeyStatement{Name: name, PublicKey: string(subject.PublicPEM), Revoke: revoke})
	if err != nil {
		t.Fatal(err)
	}
	s := &verify.SignedKeyStatement{Statement: body}
	for _, b := range by {
		if err := s.Sign(b.SV, "signer"); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// snapshotOf hashes every file and folder of a cache directory.
func snapshotOf(t *testing.T, dir string) string {
	t.Helper()
	var parts []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() {
			parts = append(parts, rel+"/")
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		parts = append(parts, rel+"="+string(digest.FromBytes(b)))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(parts)
	return strings.Join(parts, "\n")
}

// A bundle carrying a key statement that a threshold of the trusted keys did not sign is refused
// before anything is staged (check key-statement, naming the key), and the cache is as before;
// one whose statement they did sign is accepted, and the statements it carries are read back
// from the cache and applied: the new key verifies, a revocation retires the old one, and a
// revoked key cannot be introduced again.
func TestKeyStatementsInBundles(t *testing.T) {
	now := testbundle.Created.Add(time.Hour)
	a, b, mallory := testbundle.NewSigner(t), testbundle.NewSigner(t), testbundle.NewSigner(t)
	pinned := verify.Policy{Keys: []verify.TrustedKey{a.Key("a.pub")}, Now: func() time.Time { return now }}
	dir := t.TempDir()
	c, err := cache.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	// Bundle 1, signed by A, carries an introduction of B signed by Mallory only: refused.
	forged := testbundle.New(t, 1, "", signedWith([]*testbundle.Signer{a}, statement(t, "b", b, false, mallory)))
	before := snapshotOf(t, dir)
	_, err = rotImport(t, c, forged.Dir, pinned)
	if e, ok := bundle.AsError(err); !ok || e.Check != bundle.CheckKeyStatement || !strings.Contains(err.Error(), `"b"`) {
		t.Fatalf("bundle with a statement no trusted key signed: %v, want check %s naming key \"b\"", err, bundle.CheckKeyStatement)
	}
	if after := snapshotOf(t, dir); after != before {
		t.Fatalf("a refused bundle changed the cache:\nbefore %s\nafter %s", before, after)
	}

	// The same, signed by A: accepted; its statement is what a caller reads back and applies.
	b1 := testbundle.New(t, 1, "", signedWith([]*testbundle.Signer{a}, statement(t, "b", b, false, a)))
	res, err := rotImport(t, c, b1.Dir, pinned)
	if err != nil {
		t.Fatalf("bundle 1 with A's introduction of B: %v", err)
	}
	p := pinned
	changes := applyFrom(t, c, &p, res.Record)
	if len(changes) != 1 || !changes[0].Changed || changes[0].Statement.Name != "b" {
		t.Fatalf("changes %+v, want B introduced", changes)
	}
	// Bundle 2 signed by B alone: accepted with the new key set, refused with the pinned one.
	b2 := testbundle.New(t, 2, b1.Root.Digest, signedWith([]*testbundle.Signer{b}))
	if _, err := rotImport(t, c, b2.Dir, pinned); !isCheck(err, bundle.CheckSignature) {
		t.Fatalf("bundle signed by B with only A pinned: %v", err)
	}
	if _, err := rotImport(t, c, b2.Dir, p); err != nil {
		t.Fatalf("bundle signed by the introduced key B: %v", err)
	}
	// Bundle 3 signed by B revokes A.
	b3 := testbundle.New(t, 3, b2.Root.Digest, signedWith([]*testbundle.Signer{b}, statement(t, "a", a, true, b)))
	res, err = rotImport(t, c, b3.Dir, p)
	if err != nil {
		t.Fatalf("bundle 3 revoking A: %v", err)
	}
	changes = applyFrom(t, c, &p, res.Record)
	if len(changes) != 1 || !changes[0].Statement.Revoke {
		t.Fatalf("changes %+v, want A revoked", changes)
	}
	// A alone no longer signs anything: a bundle signed by A is refused on its signature.
	b4 := testbundle.New(t, 4, b3.Root.Digest, signedWith([]*testbundle.Signer{a}))
	before = snapshotOf(t, dir)
	if _, err := rotImport(t, c, b4.Dir, p); !isCheck(err, bundle.CheckSignature) {
		t.Fatalf("bundle signed by the revoked key A: %v, want check %s", err, bundle.CheckSignature)
	}
	if after := snapshotOf(t, dir); after != before {
		t.Fatal("the bundle signed by the revoked key changed the cache")
	}
	// A statement bringing A back, signed by B, is refused: a revoked key is never trusted again.
	back := testbundle.New(t, 4, b3.Root.Digest, signedWith([]*testbundle.Signer{b}, statement(t, "a2", a, false, b)))
	if _, err := rotImport(t, c, back.Dir, p); !isCheck(err, bundle.CheckKeyStatement) || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("bundle reintroducing the revoked key: %v", err)
	}
	// Revoking the last trusted key is refused: it would leave fewer keys than the threshold.
	last := testbundle.New(t, 4, b3.Root.Digest, signedWith([]*testbundle.Signer{b}, statement(t, "b", b, true, b)))
	if _, err := rotImport(t, c, last.Dir, p); !isCheck(err, bundle.CheckKeyStatement) || !strings.Contains(err.Error(), "threshold") {
		t.Fatalf("bundle revoking the last key: %v", err)
	}
}

// The same key signing a statement twice (under two names) counts once toward a threshold.
func TestKeyStatementThresholdCountsDistinctKeys(t *testing.T) {
	now := testbundle.Created.Add(time.Hour)
	a, b, c := testbundle.NewSigner(t), testbundle.NewSigner(t), testbundle.NewSigner(t)
	p := verify.Policy{Keys: []verify.TrustedKey{a.Key("a.pub"), a.Key("/other/path/a.pub"), b.Key("b.pub")}, Threshold: 2, Now: func() time.Time { return now }}
	if _, err := p.ApplyStatements([][]byte{statement(t, "c", c, false, a, a)}); !errors.Is(err, verify.ErrNoValidSignature) {
		t.Fatalf("statement signed twice by one key, threshold 2: %v", err)
	}
	ch, err := p.ApplyStatements([][]byte{statement(t, "c", c, false, a, b)})
	if err != nil || len(ch) != 1 || !ch[0].Changed {
		t.Fatalf("statement signed by two distinct keys: %+v, %v", ch, err)
	}
	// Applying it again changes nothing.
	if ch, err := p.ApplyStatements([][]byte{statement(t, "c", c, false, a, b)}); err != nil || ch[0].Changed {
		t.Fatalf("the statement again: %+v, %v", ch, err)
	}
}

// applyFrom reads the key statements of an accepted bundle back from the cache (its record's
// index names the attachments) and applies them to p.
func applyFrom(t *testing.T, c *cache.Cache, p *verify.Policy, rec cache.Record) []verify.KeyChange {
	t.Helper()
	var idx ocispec.Index
	if err := json.Unmarshal(rec.Index, &idx); err != nil {
		t.Fatal(err)
	}
	var atts []ocispec.Descriptor
	for _, d := range idx.Manifests {
		if d.Annotations[ocispec.AnnotationRefName] == bundle.RootRef {
			break
		}
		atts = append(atts, d)
	}
	raws, err := verify.KeyStatements(context.Background(), c, atts)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := p.ApplyStatements(raws)
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

func isCheck(err error, check bundle.Check) bool {
	e, ok := bundle.AsError(err)
	return ok && e.Check == check
}

// minSequence refuses a bundle at or below the floor even in an empty cache (the volume was
// lost), naming the floor; a clock set back before the current bundle's creation decides
// nothing (ClockError, not a rejection) and changes nothing.
func TestMinSequenceAndClockFloor(t *testing.T) {
	now := testbundle.Created.Add(time.Hour)
	a := testbundle.NewSigner(t)
	p := verify.Policy{Keys: []verify.TrustedKey{a.Key("a.pub")}, Now: func() time.Time { return now }, MinSequence: 5}
	dir := t.TempDir()
	c, err := cache.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	old := testbundle.New(t, 5, "", signedWith([]*testbundle.Signer{a}))
	before := snapshotOf(t, dir)
	_, err = rotImport(t, c, old.Dir, p)
	if !isCheck(err, bundle.CheckRollback) || !strings.Contains(err.Error(), "minSequence 5") {
		t.Fatalf("bundle 5 with minSequence 5 in an empty cache: %v", err)
	}
	if snapshotOf(t, dir) != before {
		t.Fatal("the refused bundle changed the cache")
	}
	b6 := testbundle.New(t, 6, "", signedWith([]*testbundle.Signer{a}))
	if _, err := rotImport(t, c, b6.Dir, p); err != nil {
		t.Fatalf("bundle 6 above the floor: %v", err)
	}
	rec, err := c.Current()
	if err != nil || rec == nil {
		t.Fatal(rec, err)
	}
	// The clock goes back a day, before bundle 6 was created.
	back := testbundle.Created.Add(-24 * time.Hour)
	p.Now = func() time.Time { return back }
	p.LastCreated = rec.Created
	b7 := testbundle.New(t, 7, b6.Root.Digest, signedWith([]*testbundle.Signer{a}))
	before = snapshotOf(t, dir)
	_, err = rotImport(t, c, b7.Dir, p)
	var ce *verify.ClockError
	if !errors.As(err, &ce) || ce.Sequence != 7 || !strings.Contains(err.Error(), "clock") || !strings.Contains(err.Error(), "last accepted bundle") {
		t.Fatalf("import with the clock set back: %v, want a ClockError naming the clock and the bundle", err)
	}
	if _, isRejection := bundle.AsError(err); isRejection {
		t.Fatal("a clock set back was reported as the bundle's fault")
	}
	if snapshotOf(t, dir) != before {
		t.Fatal("the import with the clock set back changed the cache")
	}
	p.Now = func() time.Time { return now }
	if _, err := rotImport(t, c, b7.Dir, p); err != nil {
		t.Fatalf("bundle 7 once the clock is right: %v", err)
	}
}
