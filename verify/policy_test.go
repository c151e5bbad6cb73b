package verify_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/internal/testbundle"
	"github.com/ferry-gitops/ferry/verify"
)

// Genuine bundles are accepted, in order, by ECDSA and Ed25519 keys, by a threshold of keys,
// and by a key introduced through a statement; the state moves with each.
func TestPolicyAccepts(t *testing.T) {
	a1, a2, ed := ecdsaSigner(t, "ops-2026"), ecdsaSigner(t, "ops-backup"), ed25519Signer(t, "ops-ed25519")
	now := testbundle.Created.Add(time.Hour)
	p := verify.Policy{Keys: []verify.TrustedKey{a1.key, a2.key, ed.key}, Now: func() time.Time { return now }}
	ag := newAgent(t, p)

	b1 := testbundle.New(t, 1, "", by(a1))
	if err := ag.importBundle(t, fromDir(b1.Dir)); err != nil {
		t.Fatalf("ECDSA-signed first bundle: %v", err)
	}
	b2 := testbundle.New(t, 2, b1.Root.Digest, by(ed))
	if err := ag.importBundle(t, fromTar(b2.Tar(t))); err != nil {
		t.Fatalf("Ed25519-signed second bundle: %v", err)
	}
	if st := ag.state(t); st.Sequence != 2 || st.Root != b2.Root.Digest {
		t.Fatalf("state after two bundles: %+v", st)
	}
	// The same bundle again is nothing to do, not an error to report as an attack.
	if err := ag.importBundle(t, fromDir(b2.Dir)); !errors.Is(err, verify.ErrAlreadyAccepted) {
		t.Fatalf("the last bundle again: %v", err)
	}
	// Two of the pinned keys are required now; both signed.
	ag.policy.Threshold = 2
	b3 := testbundle.New(t, 3, b2.Root.Digest, by(a1, a2))
	if err := ag.importBundle(t, fromDir(b3.Dir)); err != nil {
		t.Fatalf("bundle signed by two of two required keys: %v", err)
	}

	// Rotation: a new key, introduced by a statement the current keys signed.
	ag.policy.Threshold = 1
	next := ecdsaSigner(t, "ops-2027")
	pub, _ := next.sv.PublicKey()
	pem, err := cryptoutils.MarshalPublicKeyToPEM(pub)
	if err != nil {
		t.Fatal(err)
	}
	stmt, err := verify.SignStatement(verify.KeyStatement{Name: "ops-2027", PublicKey: string(pem), NotBefore: now.Add(-time.Minute)}, a1.sv, "ops-2026")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := jsonMarshal(stmt)
	b4 := testbundle.New(t, 4, b3.Root.Digest, by(next))
	if err := ag.importBundle(t, fromDir(b4.Dir)); err == nil {
		t.Fatal("a bundle signed by a key not yet introduced was accepted")
	}
	if _, err := ag.policy.Introduce(raw); err != nil {
		t.Fatalf("statement signed by a trusted key: %v", err)
	}
	if err := ag.importBundle(t, fromDir(b4.Dir)); err != nil {
		t.Fatalf("bundle signed by the introduced key: %v", err)
	}
	// A statement signed by a key the agent does not trust introduces nothing.
	mallory := ecdsaSigner(t, "mallory")
	forged, _ := verify.SignStatement(verify.KeyStatement{Name: "mallory", PublicKey: string(pem)}, mallory.sv, "ops-2026")
	raw, _ = jsonMarshal(forged)
	if _, err := ag.policy.Introduce(raw); !errors.Is(err, verify.ErrNoValidSignature) {
		t.Fatalf("statement signed by an unknown key: %v", err)
	}
	t.Logf("accepted 4 bundles (ECDSA, Ed25519, 2-of-2, rotated key); state %+v", ag.state(t))
}

// A blob swapped on the medium after it was read and verified changes nothing: the agent keeps
// the bytes it verified and never reads the medium again.
func TestSwapAfterReadIsHarmless(t *testing.T) {
	a1 := ecdsaSigner(t, "ops")
	p := verify.Policy{Keys: []verify.TrustedKey{a1.key}, Now: func() time.Time { return testbundle.Created.Add(time.Hour) }}
	ag := newAgent(t, p)
	f := testbundle.New(t, 1, "", by(a1))
	want, err := os.ReadFile(f.BlobPath(f.Layer.Digest))
	if err != nil {
		t.Fatal(err)
	}
	swapped := false
	rd := func(opts ...bundle.ReadOption) (*bundle.Result, error) {
		after := func(e bundle.Entry) {
			// Any entry after the layer: the layer has been read and verified by now.
			if swapped || e.Descriptor.Digest == f.Layer.Digest {
				return
			}
			if _, err := os.Stat(filepath.Join(ag.dir, "staging-1", f.Layer.Digest.Encoded())); err == nil {
				os.WriteFile(f.BlobPath(f.Layer.Digest), []byte("swapped after verification"), 0o644)
				swapped = true
			}
		}
		return bundle.ReadLayout(context.Background(), f.Dir, append(opts, bundle.WithObserver(after))...)
	}
	if err := ag.importBundle(t, rd); err != nil {
		t.Fatal(err)
	}
	if !swapped {
		t.Fatal("the test never swapped the blob")
	}
	got, err := os.ReadFile(filepath.Join(ag.dir, "cache", f.Layer.Digest.Encoded()))
	if err != nil {
		t.Fatal(err)
	}
	if digest.FromBytes(got) != f.Layer.Digest || string(got) != string(want) {
		t.Fatal("the cache holds bytes other than the ones verified")
	}
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

// A threshold counts distinct keys: the same public key pinned under two names (two paths in
// the agent's configuration) is one signer, for roots and for key statements; two distinct keys
// meet a threshold of two.
func TestThresholdCountsDistinctKeys(t *testing.T) {
	a1, a2 := ecdsaSigner(t, "ops-2026"), ecdsaSigner(t, "ops-backup")
	now := testbundle.Created.Add(time.Hour)
	twin := a1.key
	twin.Name = "/etc/ferry/keys/copy-of-ops-2026.pub"
	dup := verify.Policy{Keys: []verify.TrustedKey{a1.key, twin}, Threshold: 2, Now: func() time.Time { return now }}

	ag := newAgent(t, dup)
	before := ag.snapshot(t)
	b1 := testbundle.New(t, 1, "", by(a1))
	err := ag.importBundle(t, fromDir(b1.Dir))
	r, ok := bundle.AsError(err)
	if !ok || r.Check != bundle.CheckSignature || r.Item != bundle.ItemRoot {
		t.Fatalf("one key pinned twice, threshold 2: want a signature rejection of the root, got %v", err)
	}
	for _, want := range []string{"1 distinct trusted key(s)", "2 required", "is the same key as ops-2026"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("rejection does not say %q: %v", want, err)
		}
	}
	if after := ag.snapshot(t); after != before {
		t.Fatalf("a refused bundle changed the cache:\n%s\n%s", before, after)
	}

	// Two distinct keys: accepted.
	ag.policy.Keys = []verify.TrustedKey{a1.key, a2.key}
	b2 := testbundle.New(t, 1, "", by(a1, a2))
	if err := ag.importBundle(t, fromDir(b2.Dir)); err != nil {
		t.Fatalf("two distinct keys, threshold 2: %v", err)
	}

	// Key statements: one key's signature listed under both of its names introduces nothing.
	next := ecdsaSigner(t, "ops-2027")
	pub, _ := next.sv.PublicKey()
	pem, err := cryptoutils.MarshalPublicKeyToPEM(pub)
	if err != nil {
		t.Fatal(err)
	}
	stmt, err := verify.SignStatement(verify.KeyStatement{Name: "ops-2027", PublicKey: string(pem)}, a1.sv, "ops-2026")
	if err != nil {
		t.Fatal(err)
	}
	stmt.Signatures = append(stmt.Signatures, verify.StatementSignature{Signer: twin.Name, Signature: stmt.Signatures[0].Signature})
	raw, _ := jsonMarshal(stmt)
	p := dup
	if _, err := p.Introduce(raw); !errors.Is(err, verify.ErrNoValidSignature) || !strings.Contains(err.Error(), "1 distinct trusted key(s)") {
		t.Fatalf("statement signed by one key under two names, threshold 2: %v", err)
	}
	if len(p.Keys) != 2 {
		t.Fatalf("a refused statement added a key: %d keys", len(p.Keys))
	}
	// Signed by two distinct keys: introduced.
	p = verify.Policy{Keys: []verify.TrustedKey{a1.key, a2.key}, Threshold: 2, Now: dup.Now}
	stmt2, _ := verify.SignStatement(verify.KeyStatement{Name: "ops-2027", PublicKey: string(pem)}, a2.sv, "ops-backup")
	stmt.Signatures = []verify.StatementSignature{stmt.Signatures[0], stmt2.Signatures[0]}
	raw, _ = jsonMarshal(stmt)
	if _, err := p.Introduce(raw); err != nil {
		t.Fatalf("statement signed by two distinct keys: %v", err)
	}
}
