package verify_test

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	sgbundle "github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"
	"github.com/sigstore/sigstore-go/pkg/tlog"
	sgverify "github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/fetch"
	"github.com/ferry-gitops/ferry/internal/testenv"
	"github.com/ferry-gitops/ferry/spec"
	"github.com/ferry-gitops/ferry/verify"
)

const (
	signer       = "release@ferry.invalid"
	signerIssuer = "https://issuer.ferry.invalid"
)

// upstream is a registry of images signed by the real cosign CLI, the way upstreams sign them.
type upstream struct {
	t    *testing.T
	reg  *testenv.Registry
	keys string // folder of cosign.key and cosign.pub
}

// push pushes a two-platform image to repo:tag and returns its reference by digest.
func (u *upstream) push(repo string) string {
	ref := u.reg.Host + "/" + repo
	d, err := testenv.PushIndex(context.Background(), ref+":1.0.0", "linux/amd64", "linux/arm64")
	if err != nil {
		u.t.Fatal(err)
	}
	return ref + "@" + d
}

// cosign runs the real cosign CLI in the key folder.
func (u *upstream) cosign(args ...string) string {
	u.t.Helper()
	return testenv.Must(u.t, u.keys, []string{"COSIGN_PASSWORD=ferry"}, "cosign", args...)
}

// sign signs ref with the key pair offline: as a Sigstore bundle referrer, or tag-based when legacy.
func (u *upstream) sign(ref string, legacy bool) {
	args := []string{"sign", "--yes", "--key", "cosign.key", "--use-signing-config=false", "--tlog-upload=false", "--allow-insecure-registry"}
	if legacy {
		args = append(args, "--new-bundle-format=false")
	}
	u.cosign(append(args, ref)...)
}

// mirror copies ref with its signatures into a new bundle layout the way mirror pack does.
func (u *upstream) mirror(name, ref string) (*bundle.Layout, bundle.Item) {
	u.t.Helper()
	l, err := bundle.NewLayout(u.t.TempDir())
	if err != nil {
		u.t.Fatal(err)
	}
	repo, dgst, _ := strings.Cut(ref, "@")
	item, err := fetch.Image(context.Background(), l, spec.Image{Name: name, Image: repo, Digest: dgst}, &fetch.Options{PlainHTTP: []string{u.reg.Host}})
	if err != nil {
		u.t.Fatal(err)
	}
	return l, item
}

// tamper flips one byte of the first layer of item's signature referrer of the given form.
func tamper(t *testing.T, l *bundle.Layout, item bundle.Item, tagged bool) {
	t.Helper()
	for _, r := range item.Referrers {
		if r.Subject != item.Descriptor.Digest || (r.Tag != "") != tagged || (tagged && !strings.HasSuffix(r.Tag, ".sig")) {
			continue
		}
		rc, err := l.Fetch(context.Background(), r.Descriptor)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		var m ocispec.Manifest
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(l.Dir(), "blobs", "sha256", m.Layers[0].Digest.Encoded())
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)/2] ^= 0x01
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatalf("item %s has no signature referrer (tagged %v)", item.Name, tagged)
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{t: t, reg: testenv.NewRegistry(t), keys: t.TempDir()}
	u.cosign("generate-key-pair")
	return u
}

func loadKey(t *testing.T, dir string) verify.Key {
	t.Helper()
	k, err := verify.LoadPublicKey(filepath.Join(dir, "cosign.pub"))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestImageSignatureKeys verifies images signed by the real cosign CLI with a key, in each form
// cosign writes, offline from bundle layouts after the registry has stopped.
func TestImageSignatureKeys(t *testing.T) {
	ctx := context.Background()
	u := newUpstream(t)
	other := t.TempDir()
	testenv.Must(t, other, []string{"COSIGN_PASSWORD=ferry"}, "cosign", "generate-key-pair")

	both, tagged, bundled, unsigned := u.push("team/both"), u.push("team/tagged"), u.push("team/bundled"), u.push("team/unsigned")
	u.sign(both, false)
	u.sign(both, true)
	u.sign(tagged, true)
	u.sign(bundled, false)

	type mirrored struct {
		l    *bundle.Layout
		item bundle.Item
	}
	m := map[string]mirrored{}
	for name, ref := range map[string]string{
		"both": both, "tagged": tagged, "bundled": bundled, "unsigned": unsigned,
		"tampered-tag": tagged, "tampered-bundle": bundled,
	} {
		l, item := u.mirror(name, ref)
		m[name] = mirrored{l, item}
	}
	if err := u.reg.Stop(); err != nil {
		t.Fatal(err)
	}
	tamper(t, m["tampered-tag"].l, m["tampered-tag"].item, true)
	tamper(t, m["tampered-bundle"].l, m["tampered-bundle"].item, false)

	// Another image's signatures moved onto the unsigned image, claiming it as their subject.
	moved := m["unsigned"].item
	moved.Name = "moved"
	for _, r := range m["both"].item.Referrers {
		r.Subject = moved.Descriptor.Digest
		moved.Referrers = append(moved.Referrers, r)
	}
	// Its signatures as they came, still naming the image they sign.
	honest := m["unsigned"].item
	honest.Name = "honest"
	honest.Referrers = m["both"].item.Referrers

	key, wrong := loadKey(t, u.keys), loadKey(t, other)
	cases := []struct {
		name   string
		l      *bundle.Layout
		item   bundle.Item
		policy verify.ImagePolicy
		want   error  // nil: verifies
		msg    string // the error also contains this
	}{
		{"both forms", m["both"].l, m["both"].item, verify.ImagePolicy{Keys: []verify.Key{key}}, nil, ""},
		{"tag-based form alone", m["tagged"].l, m["tagged"].item, verify.ImagePolicy{Keys: []verify.Key{key}}, nil, ""},
		{"Sigstore bundle form alone", m["bundled"].l, m["bundled"].item, verify.ImagePolicy{Keys: []verify.Key{key}}, nil, ""},
		{"any one of the keys", m["bundled"].l, m["bundled"].item, verify.ImagePolicy{Keys: []verify.Key{wrong, key}}, nil, ""},
		{"wrong key", m["both"].l, m["both"].item, verify.ImagePolicy{Keys: []verify.Key{wrong}}, verify.ErrNoValidSignature,
			"item both: image " + string(m["both"].item.Descriptor.Digest) + ": no valid signature by " + wrong.Name},
		{"unsigned", m["unsigned"].l, m["unsigned"].item, verify.ImagePolicy{Keys: []verify.Key{key}}, verify.ErrUnsigned,
			"item unsigned: image " + string(m["unsigned"].item.Descriptor.Digest) + ": carries no signature (mirror with signatures: true)"},
		{"another image's signatures moved onto it", m["both"].l, moved, verify.ImagePolicy{Keys: []verify.Key{key}}, verify.ErrNoValidSignature, "not this image"},
		{"another image's signatures, honestly labelled", m["both"].l, honest, verify.ImagePolicy{Keys: []verify.Key{key}}, verify.ErrUnsigned, ""},
		{"tampered tag-based payload", m["tampered-tag"].l, m["tampered-tag"].item, verify.ImagePolicy{Keys: []verify.Key{key}}, verify.ErrNoValidSignature, ".sig"},
		{"tampered Sigstore bundle", m["tampered-bundle"].l, m["tampered-bundle"].item, verify.ImagePolicy{Keys: []verify.Key{key}}, verify.ErrNoValidSignature, "Sigstore bundle"},
		{"keyless policy, key signatures", m["both"].l, m["both"].item, verify.ImagePolicy{TrustedRoot: virtualRoot(t, newVirtualSigstore(t)), Identity: signer, Issuer: signerIssuer},
			verify.ErrNoValidSignature, "the policy names no key"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := verify.ImageSignature(ctx, c.l, c.item, c.policy)
			check(t, err, c.want, c.msg)
		})
	}
}

func check(t *testing.T, err, want error, msg string) {
	t.Helper()
	switch {
	case want == nil && err != nil:
		t.Fatalf("want verified, got %v", err)
	case want != nil && !errors.Is(err, want):
		t.Fatalf("want %v, got %v", want, err)
	case want != nil && !strings.Contains(err.Error(), msg):
		t.Fatalf("error %q does not contain %q", err, msg)
	case err != nil:
		t.Logf("rejected: %v", err)
	}
}

func newVirtualSigstore(t *testing.T) *ca.VirtualSigstore {
	t.Helper()
	vs, err := ca.NewVirtualSigstore()
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

// virtualRoot returns the trusted_root.json of a local Fulcio, Rekor, CT log and TSA.
func virtualRoot(t *testing.T, vs *ca.VirtualSigstore) []byte {
	t.Helper()
	rawIDs := func(logs map[string]*root.TransparencyLog) map[string]*root.TransparencyLog {
		out := map[string]*root.TransparencyLog{}
		for id, l := range logs {
			raw, err := hex.DecodeString(id)
			if err != nil {
				t.Fatal(err)
			}
			c := *l
			c.ID = raw
			out[id] = &c
		}
		return out
	}
	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01, vs.FulcioCertificateAuthorities(), rawIDs(vs.CTLogs()), vs.TimestampingAuthorities(), rawIDs(vs.RekorLogs()))
	if err != nil {
		t.Fatal(err)
	}
	b, err := tr.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rekorEntry returns e as a Rekor entry of a Sigstore bundle: with its kind and version, and the
// signed entry timestamp vs's Rekor gives it.
func rekorEntry(t *testing.T, vs *ca.VirtualSigstore, e *tlog.Entry) *protorekor.TransparencyLogEntry {
	t.Helper()
	tle := proto.Clone(e.TransparencyLogEntry()).(*protorekor.TransparencyLogEntry)
	var kv struct{ Kind, APIVersion string }
	if err := json.Unmarshal(tle.GetCanonicalizedBody(), &kv); err != nil {
		t.Fatal(err)
	}
	tle.KindVersion = &protorekor.KindVersion{Kind: kv.Kind, Version: kv.APIVersion}
	set, err := vs.RekorSignPayload(tlog.RekorPayload{
		Body:           base64.StdEncoding.EncodeToString(tle.GetCanonicalizedBody()),
		IntegratedTime: tle.GetIntegratedTime(),
		LogIndex:       tle.GetLogIndex(),
		LogID:          hex.EncodeToString(tle.GetLogId().GetKeyId()),
	})
	if err != nil {
		t.Fatal(err)
	}
	tle.InclusionPromise = &protorekor.InclusionPromise{SignedEntryTimestamp: set}
	return tle
}

// entityContent returns what the test CA made when it signed: the certificate, the signature
// and the transparency log entry.
func entityContent(t *testing.T, e *ca.TestEntity) (sgverify.VerificationContent, sgverify.SignatureContent, *tlog.Entry) {
	t.Helper()
	vc, err := e.VerificationContent()
	if err != nil {
		t.Fatal(err)
	}
	sc, err := e.SignatureContent()
	if err != nil {
		t.Fatal(err)
	}
	entries, err := e.TlogEntries()
	if err != nil {
		t.Fatal(err)
	}
	return vc, sc, entries[0]
}

// signKeyless signs ref as identity of issuer with vs, a local Fulcio and Rekor, and attaches
// the signature with the cosign CLI (tag-based, with certificate, chain and Rekor bundle).
func (u *upstream) signKeyless(vs *ca.VirtualSigstore, ref, identity, issuer string) {
	u.t.Helper()
	dir := u.t.TempDir()
	payload := u.cosign("generate", "--allow-insecure-registry", ref)
	e, err := vs.Sign(identity, issuer, []byte(payload))
	if err != nil {
		u.t.Fatal(err)
	}
	vc, sc, entry := entityContent(u.t, e)
	tle := rekorEntry(u.t, vs, entry)
	rekorBundle, err := json.Marshal(map[string]any{"rekorBundle": map[string]any{
		"SignedEntryTimestamp": tle.GetInclusionPromise().GetSignedEntryTimestamp(),
		"Payload": map[string]any{
			"body":           base64.StdEncoding.EncodeToString(tle.GetCanonicalizedBody()),
			"integratedTime": tle.GetIntegratedTime(),
			"logIndex":       tle.GetLogIndex(),
			"logID":          hex.EncodeToString(tle.GetLogId().GetKeyId()),
		},
	}})
	if err != nil {
		u.t.Fatal(err)
	}
	leaf, err := cryptoutils.MarshalCertificateToPEM(vc.Certificate())
	if err != nil {
		u.t.Fatal(err)
	}
	fulcio := vs.FulcioCertificateAuthorities()[0].(*root.FulcioCertificateAuthority)
	chain, err := cryptoutils.MarshalCertificatesToPEM(append(fulcio.Intermediates, fulcio.Root))
	if err != nil {
		u.t.Fatal(err)
	}
	files := map[string][]byte{
		"payload.json": []byte(payload),
		"sig.b64":      []byte(base64.StdEncoding.EncodeToString(sc.MessageSignatureContent().Signature())),
		"cert.pem":     leaf,
		"chain.pem":    chain,
		"rekor.json":   rekorBundle,
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			u.t.Fatal(err)
		}
	}
	testenv.Must(u.t, dir, nil, "cosign", "attach", "signature", "--allow-insecure-registry", "--allow-http-registry",
		"--payload", "payload.json", "--signature", "sig.b64", "--certificate", "cert.pem", "--certificate-chain", "chain.pem",
		"--rekor-response", "rekor.json", ref)
}

// attestKeyless signs the image digest signs as identity of issuer with vs in cosign's Sigstore bundle form
// (a DSSE envelope of cosign's signing statement, a certificate, a Rekor entry with inclusion
// proof) and attaches the bundle to ref as an OCI referrer with the oras CLI.
func (u *upstream) attestKeyless(vs *ca.VirtualSigstore, ref, signs, identity, issuer string) {
	u.t.Helper()
	dir := u.t.TempDir()
	_, dgst, _ := strings.Cut(signs, "@")
	statement := fmt.Sprintf(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"digest":{"sha256":%q}}],"predicateType":"https://sigstore.dev/cosign/sign/v1","predicate":{}}`,
		strings.TrimPrefix(dgst, "sha256:"))
	e, err := vs.AttestAtTime(identity, issuer, []byte(statement), time.Now().Add(5*time.Minute), true)
	if err != nil {
		u.t.Fatal(err)
	}
	vc, sc, entry := entityContent(u.t, e)
	env := sc.(*sgbundle.Envelope).Envelope
	body, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		u.t.Fatal(err)
	}
	pe := &protodsse.Envelope{Payload: body, PayloadType: env.PayloadType}
	for _, s := range env.Signatures {
		sig, err := base64.StdEncoding.DecodeString(s.Sig)
		if err != nil {
			u.t.Fatal(err)
		}
		pe.Signatures = append(pe.Signatures, &protodsse.Signature{Sig: sig, Keyid: s.KeyID})
	}
	pb := &protobundle.Bundle{
		MediaType: verify.SigstoreBundleMediaType,
		VerificationMaterial: &protobundle.VerificationMaterial{
			Content:     &protobundle.VerificationMaterial_Certificate{Certificate: &protocommon.X509Certificate{RawBytes: vc.Certificate().Raw}},
			TlogEntries: []*protorekor.TransparencyLogEntry{rekorEntry(u.t, vs, entry)},
		},
		Content: &protobundle.Bundle_DsseEnvelope{DsseEnvelope: pe},
	}
	b, err := protojson.Marshal(pb)
	if err != nil {
		u.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bundle.json"), b, 0o644); err != nil {
		u.t.Fatal(err)
	}
	testenv.Must(u.t, dir, nil, "oras", "attach", "--plain-http", "--disable-path-validation", "--artifact-type", verify.SigstoreBundleMediaType,
		ref, "bundle.json:"+verify.SigstoreBundleMediaType)
}

// TestImageSignatureKeyless verifies keyless signatures offline against a trusted root: a local
// Fulcio and Rekor (sigstore-go's virtual Sigstore) stand in for the public ones, which this test
// cannot reach; the signatures are attached with the cosign and oras CLIs and mirrored as usual.
func TestImageSignatureKeyless(t *testing.T) {
	ctx := context.Background()
	u := newUpstream(t)
	vs, stranger := newVirtualSigstore(t), newVirtualSigstore(t)
	tagged, bundled, forged, moved := u.push("team/tagged"), u.push("team/bundled"), u.push("team/forged"), u.push("team/moved")
	u.signKeyless(vs, tagged, signer, signerIssuer)
	u.attestKeyless(vs, bundled, bundled, signer, signerIssuer)
	// Signed by an authority the policy does not trust, in both forms.
	u.signKeyless(stranger, forged, signer, signerIssuer)
	u.attestKeyless(stranger, forged, forged, signer, signerIssuer)
	// A valid bundle for another image, attached to this one.
	u.attestKeyless(vs, moved, bundled, signer, signerIssuer)
	m := map[string]struct {
		l    *bundle.Layout
		item bundle.Item
	}{}
	for name, ref := range map[string]string{"tagged": tagged, "bundled": bundled, "forged": forged, "moved": moved} {
		l, item := u.mirror(name, ref)
		m[name] = struct {
			l    *bundle.Layout
			item bundle.Item
		}{l, item}
	}
	if err := u.reg.Stop(); err != nil {
		t.Fatal(err)
	}
	trusted := virtualRoot(t, vs)
	policy := func(identity, issuer string) verify.ImagePolicy {
		return verify.ImagePolicy{TrustedRoot: trusted, Identity: identity, Issuer: issuer}
	}
	cases := []struct {
		name   string
		item   string
		policy verify.ImagePolicy
		want   error
		msg    string
	}{
		{"tag-based form", "tagged", policy(signer, signerIssuer), nil, ""},
		{"Sigstore bundle form", "bundled", policy(signer, signerIssuer), nil, ""},
		{"tag-based form, other identity", "tagged", policy("intruder@ferry.invalid", signerIssuer), verify.ErrNoValidSignature, "none of the expected identities matched"},
		{"Sigstore bundle form, other identity", "bundled", policy("intruder@ferry.invalid", signerIssuer), verify.ErrNoValidSignature, `expected SAN value "intruder@ferry.invalid"`},
		{"tag-based form, other issuer", "tagged", policy(signer, "https://other.ferry.invalid"), verify.ErrNoValidSignature, "none of the expected identities matched"},
		{"Sigstore bundle form, other issuer", "bundled", policy(signer, "https://other.ferry.invalid"), verify.ErrNoValidSignature, `expected issuer value "https://other.ferry.invalid"`},
		{"untrusted authority", "forged", policy(signer, signerIssuer), verify.ErrNoValidSignature, "not enough verified log entries"},
		{"Sigstore bundle of another image", "moved", policy(signer, signerIssuer), verify.ErrNoValidSignature, "artifact digest does not match"},
		{"key policy, keyless signatures", "tagged", verify.ImagePolicy{Keys: []verify.Key{loadKey(t, u.keys)}}, verify.ErrNoValidSignature, "none of the keys"},
		{"identity without issuer", "tagged", verify.ImagePolicy{TrustedRoot: trusted, Identity: signer}, nil, "needs both an identity and an issuer"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			mi := m[c.item]
			err := verify.ImageSignature(ctx, mi.l, mi.item, c.policy)
			if c.want == nil && c.msg != "" {
				if err == nil || !strings.Contains(err.Error(), c.msg) {
					t.Fatalf("error %v, want one containing %q", err, c.msg)
				}
				return
			}
			check(t, err, c.want, c.msg)
		})
	}
}
