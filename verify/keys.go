package verify

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/ferry-gitops/ferry/bundle"
)

// MediaTypeKeyStatement is the media type of a key statement attachment: an OCI manifest of
// this artifact type whose layers of this media type each hold a SignedKeyStatement.
const MediaTypeKeyStatement = "application/vnd.ferry.key-statement.v1+json"

// KeyStatement introduces a new trusted key, or retires one (Revoke). It takes effect only when
// signed by keys the agent already trusts (as many distinct keys as the policy's threshold), so
// keys can be rotated without touching every agent's configuration by hand, and never by a
// bundle alone.
type KeyStatement struct {
	Name string `json:"name"`
	// PublicKey is the key introduced or retired, PEM encoded.
	PublicKey string    `json:"publicKey"`
	NotBefore time.Time `json:"notBefore,omitzero"`
	NotAfter  time.Time `json:"notAfter,omitzero"`
	// Revoke retires the key: it is no longer trusted, and never trusted again.
	Revoke bool `json:"revoke,omitempty"`
}

// SignedKeyStatement is a KeyStatement's JSON and the signatures over those exact bytes.
type SignedKeyStatement struct {
	Statement  []byte               `json:"statement"`
	Signatures []StatementSignature `json:"signatures"`
}

// StatementSignature is one trusted key's signature over a statement. Signer names the key for
// people; which key signed is found by verifying, never taken from the name.
type StatementSignature struct {
	Signer    string `json:"signer"`
	Signature []byte `json:"signature"`
}

const maxStatement = 64 << 10

// KeyChange is what a statement did to a policy's keys.
type KeyChange struct {
	Statement   KeyStatement
	Fingerprint string
	// Key is the key introduced (zero for a revocation).
	Key TrustedKey
	// Changed is false when the statement was applied before (the key is already trusted, or
	// already retired).
	Changed bool
	// SignedBy are the names of the trusted keys whose signatures counted.
	SignedBy []string
}

// Fingerprint identifies a public key: "sha256:" and the hex SHA-256 of its PKIX DER encoding
// (the same key under two names or paths has one fingerprint).
func Fingerprint(v signature.Verifier) (string, error) {
	pub, err := v.PublicKey()
	if err != nil {
		return "", err
	}
	der, err := cryptoutils.MarshalPublicKeyToDER(pub)
	if err != nil {
		return "", err
	}
	return "sha256:" + fmt.Sprintf("%x", sha256.Sum256(der)), nil
}

// parsedStatement is a statement whose signatures were counted.
type parsedStatement struct {
	stmt     KeyStatement
	verifier signature.Verifier
	fp       string
	signedBy []string
}

// checkStatement parses a signed statement and checks that a threshold of p's keys, valid now,
// signed it, counting distinct keys by fingerprint.
func (p *Policy) checkStatement(raw []byte) (*parsedStatement, error) {
	if len(raw) > maxStatement {
		return nil, fmt.Errorf("key statement: %d bytes, at most %d", len(raw), maxStatement)
	}
	var s SignedKeyStatement
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("key statement: not a signed statement: %w", err)
	}
	var stmt KeyStatement
	sdec := json.NewDecoder(bytes.NewReader(s.Statement))
	sdec.DisallowUnknownFields()
	if err := sdec.Decode(&stmt); err != nil {
		return nil, fmt.Errorf("key statement: %w", err)
	}
	what := "key statement for"
	if stmt.Revoke {
		what = "key revocation of"
	}
	if stmt.Name == "" {
		return nil, fmt.Errorf("%s an unnamed key: the statement needs a name", what)
	}
	if !stmt.NotBefore.IsZero() && !stmt.NotAfter.IsZero() && !stmt.NotAfter.After(stmt.NotBefore) {
		return nil, fmt.Errorf("%s %q: notAfter %s is not after notBefore %s", what, stmt.Name, stmt.NotAfter.Format(time.RFC3339), stmt.NotBefore.Format(time.RFC3339))
	}
	now := time.Now()
	if p.Now != nil {
		now = p.Now()
	}
	threshold := max(p.Threshold, 1)
	signed := map[string]bool{}
	var signedBy []string
	for _, sig := range s.Signatures {
		for _, k := range p.Keys {
			if !k.validAt(now) || k.Verifier.VerifySignature(bytes.NewReader(sig.Signature), bytes.NewReader(s.Statement)) != nil {
				continue
			}
			fp, err := Fingerprint(k.Verifier)
			if err != nil || signed[fp] {
				continue
			}
			signed[fp] = true
			signedBy = append(signedBy, k.Name)
		}
	}
	if len(signed) < threshold {
		return nil, fmt.Errorf("%s %q: signed by %d distinct trusted key(s), %d required: %w", what, stmt.Name, len(signed), threshold, ErrNoValidSignature)
	}
	pub, err := cryptoutils.UnmarshalPEMToPublicKey([]byte(stmt.PublicKey))
	if err != nil {
		return nil, fmt.Errorf("%s %q: publicKey: %w", what, stmt.Name, err)
	}
	v, err := signature.LoadVerifier(pub, crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("%s %q: publicKey: %w", what, stmt.Name, err)
	}
	fp, err := Fingerprint(v)
	if err != nil {
		return nil, fmt.Errorf("%s %q: publicKey: %w", what, stmt.Name, err)
	}
	return &parsedStatement{stmt: stmt, verifier: v, fp: fp, signedBy: signedBy}, nil
}

// Introduce checks a signed key statement against the keys trusted now and, when enough of them
// signed it, trusts the key it introduces. It returns the new key. A revocation is refused:
// use ApplyStatements.
func (p *Policy) Introduce(raw []byte) (TrustedKey, error) {
	ps, err := p.checkStatement(raw)
	if err != nil {
		return TrustedKey{}, err
	}
	if ps.stmt.Revoke {
		return TrustedKey{}, fmt.Errorf("key revocation of %q: not an introduction", ps.stmt.Name)
	}
	ch, err := p.apply(ps)
	if err != nil {
		return TrustedKey{}, err
	}
	if !ch.Changed {
		return TrustedKey{}, fmt.Errorf("key statement: a key named %q is already trusted", ps.stmt.Name)
	}
	return ch.Key, nil
}

// ApplyStatements checks every signed statement against the keys p trusts now (before any of
// them is applied: a key a statement introduces does not sign another in the same call), then
// applies the introductions and, last, the revocations. Applying a statement again changes
// nothing. On an error p is unchanged.
func (p *Policy) ApplyStatements(raws [][]byte) ([]KeyChange, error) {
	var parsed []*parsedStatement
	for _, raw := range raws {
		ps, err := p.checkStatement(raw)
		if err != nil {
			return nil, err
		}
		parsed = append(parsed, ps)
	}
	next := *p
	next.Keys = slices.Clone(p.Keys)
	next.Revoked = slices.Clone(p.Revoked)
	var changes []KeyChange
	for _, revoke := range []bool{false, true} {
		for _, ps := range parsed {
			if ps.stmt.Revoke != revoke {
				continue
			}
			ch, err := next.apply(ps)
			if err != nil {
				return nil, err
			}
			changes = append(changes, ch)
		}
	}
	*p = next
	return changes, nil
}

// apply makes one checked statement's change.
func (p *Policy) apply(ps *parsedStatement) (KeyChange, error) {
	stmt := ps.stmt
	ch := KeyChange{Statement: stmt, Fingerprint: ps.fp, SignedBy: ps.signedBy}
	at := -1
	for i, k := range p.Keys {
		if fp, err := Fingerprint(k.Verifier); err == nil && fp == ps.fp {
			at = i
		}
	}
	revoked := slices.Contains(p.Revoked, ps.fp)
	if stmt.Revoke {
		switch {
		case at < 0 && revoked:
			return ch, nil
		case at < 0:
			return ch, fmt.Errorf("key revocation of %q (%s): no such key is trusted", stmt.Name, ps.fp)
		}
		if len(p.Keys)-1 < max(p.Threshold, 1) {
			return ch, fmt.Errorf("key revocation of %q (%s): it would leave %d trusted key(s), fewer than the threshold %d; introduce the next key first", stmt.Name, ps.fp, len(p.Keys)-1, max(p.Threshold, 1))
		}
		p.Keys = slices.Delete(p.Keys, at, at+1)
		p.Revoked = append(p.Revoked, ps.fp)
		ch.Changed = true
		return ch, nil
	}
	if revoked {
		return ch, fmt.Errorf("key statement for %q (%s): this key was revoked and is never trusted again", stmt.Name, ps.fp)
	}
	if at >= 0 {
		ch.Key = p.Keys[at]
		return ch, nil // introduced before (or pinned): nothing to do
	}
	for _, k := range p.Keys {
		if k.Name == stmt.Name {
			return ch, fmt.Errorf("key statement: a different key named %q is already trusted", stmt.Name)
		}
	}
	k := TrustedKey{Key: Key{Name: stmt.Name, Verifier: ps.verifier}, NotBefore: stmt.NotBefore, NotAfter: stmt.NotAfter}
	p.Keys = append(p.Keys, k)
	ch.Key, ch.Changed = k, true
	return ch, nil
}

// KeyStatements returns the signed statements that attachments carry (manifests of artifact
// type MediaTypeKeyStatement; other attachments, such as signatures, are skipped), reading
// them through f with the same bounds as signatures.
func KeyStatements(ctx context.Context, f Fetcher, attachments []ocispec.Descriptor) ([][]byte, error) {
	var out [][]byte
	for _, a := range attachments {
		raw, err := readAll(ctx, f, a)
		if err != nil {
			return nil, fmt.Errorf("attachment %s: %w", a.Digest, err)
		}
		var m ocispec.Manifest
		if json.Unmarshal(raw, &m) != nil || (m.ArtifactType != MediaTypeKeyStatement && m.Config.MediaType != MediaTypeKeyStatement) {
			continue
		}
		for _, l := range m.Layers {
			if l.MediaType != MediaTypeKeyStatement {
				continue
			}
			if l.Size > maxStatement {
				return nil, fmt.Errorf("key statement %s: %d bytes, at most %d", l.Digest, l.Size, maxStatement)
			}
			b, err := readAll(ctx, f, l)
			if err != nil {
				return nil, fmt.Errorf("key statement %s: %w", l.Digest, err)
			}
			out = append(out, b)
		}
	}
	return out, nil
}

// keyStatements checks, once the root's signatures are decided, that every key statement the
// bundle carries is signed by a threshold of the keys trusted now and applies cleanly; the
// bundle is refused otherwise. The statements take effect only when the caller applies them
// after the bundle is accepted (the agent does, and keeps the key set beside the cache's state).
func (r *Run) keyStatements(ctx context.Context) error {
	raws, err := KeyStatements(ctx, r.sigs, r.sigs.Attachments())
	if err == nil && len(raws) > 0 {
		p := r.policy
		_, err = p.ApplyStatements(raws)
	}
	if err != nil {
		return r.rejection(bundle.CheckKeyStatement, err.Error(),
			"sign the key statement with a threshold of the keys the agent trusts now ('sync status' lists them), or pack the bundle without it")
	}
	return nil
}

// SignStatement signs a key statement's JSON with signer, named signerName in the result.
func SignStatement(stmt KeyStatement, signer signature.Signer, signerName string) (*SignedKeyStatement, error) {
	body, err := json.Marshal(stmt)
	if err != nil {
		return nil, err
	}
	sig, err := signer.SignMessage(bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("sign key statement for %q: %w", stmt.Name, err)
	}
	return &SignedKeyStatement{Statement: body, Signatures: []StatementSignature{{Signer: signerName, Signature: sig}}}, nil
}

// ParsePublicKey reads a PEM public key, named name in messages.
func ParsePublicKey(name string, pem []byte) (Key, error) {
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(pem)
	if err != nil {
		return Key{}, fmt.Errorf("public key %s: %w", name, err)
	}
	v, err := signature.LoadVerifier(pub, crypto.SHA256)
	if err != nil {
		return Key{}, fmt.Errorf("public key %s: %w", name, err)
	}
	return Key{Name: name, Verifier: v}, nil
}

// Sign adds signer's signature (named signerName) over the statement's exact bytes: a
// statement needs as many distinct trusted keys' signatures as the agent's threshold.
func (s *SignedKeyStatement) Sign(signer signature.Signer, signerName string) error {
	sig, err := signer.SignMessage(bytes.NewReader(s.Statement))
	if err != nil {
		return fmt.Errorf("sign key statement: %w", err)
	}
	s.Signatures = append(s.Signatures, StatementSignature{Signer: signerName, Signature: sig})
	return nil
}
