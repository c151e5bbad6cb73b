package verify

import (
	"bytes"
	"crypto"
	"encoding/json"
	"fmt"
	"time"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
)

// KeyStatement introduces a new trusted key. It takes effect only when signed by keys the agent
// already trusts (as many as the policy's threshold), so keys can be rotated without touching
// every agent's configuration by hand, and never by a bundle alone.
type KeyStatement struct {
	Name string `json:"name"`
	// PublicKey is the new key, PEM encoded.
	PublicKey string    `json:"publicKey"`
	NotBefore time.Time `json:"notBefore,omitzero"`
	NotAfter  time.Time `json:"notAfter,omitzero"`
}

// SignedKeyStatement is a KeyStatement's JSON and the signatures over those exact bytes.
type SignedKeyStatement struct {
	Statement  []byte               `json:"statement"`
	Signatures []StatementSignature `json:"signatures"`
}

// StatementSignature is one trusted key's signature over a statement.
type StatementSignature struct {
	Signer    string `json:"signer"`
	Signature []byte `json:"signature"`
}

const maxStatement = 64 << 10

// Introduce checks a signed key statement against the keys trusted now and, when enough of them
// signed it, trusts the key it introduces. It returns the new key.
func (p *Policy) Introduce(raw []byte) (TrustedKey, error) {
	if len(raw) > maxStatement {
		return TrustedKey{}, fmt.Errorf("key statement: %d bytes, at most %d", len(raw), maxStatement)
	}
	var s SignedKeyStatement
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return TrustedKey{}, fmt.Errorf("key statement: not a signed statement: %w", err)
	}
	var stmt KeyStatement
	if err := json.Unmarshal(s.Statement, &stmt); err != nil {
		return TrustedKey{}, fmt.Errorf("key statement: %w", err)
	}
	now := time.Now()
	if p.Now != nil {
		now = p.Now()
	}
	threshold := max(p.Threshold, 1)
	signed := map[string]bool{} // by KeyID: one key pinned under two names counts once
	for _, sig := range s.Signatures {
		for _, k := range p.Keys {
			if k.Name != sig.Signer || !k.validAt(now) {
				continue
			}
			id, err := KeyID(k.Key)
			if err != nil || signed[id] {
				continue
			}
			if k.Verifier.VerifySignature(bytes.NewReader(sig.Signature), bytes.NewReader(s.Statement)) == nil {
				signed[id] = true
			}
		}
	}
	if len(signed) < threshold {
		return TrustedKey{}, fmt.Errorf("key statement for %q: signed by %d distinct trusted key(s) (counted by key id, the sha256 of the public key), %d required: %w", stmt.Name, len(signed), threshold, ErrNoValidSignature)
	}
	pub, err := cryptoutils.UnmarshalPEMToPublicKey([]byte(stmt.PublicKey))
	if err != nil {
		return TrustedKey{}, fmt.Errorf("key statement for %q: %w", stmt.Name, err)
	}
	v, err := signature.LoadVerifier(pub, crypto.SHA256)
	if err != nil {
		return TrustedKey{}, fmt.Errorf("key statement for %q: %w", stmt.Name, err)
	}
	for _, k := range p.Keys {
		if k.Name == stmt.Name {
			return TrustedKey{}, fmt.Errorf("key statement: a key named %q is already trusted", stmt.Name)
		}
	}
	k := TrustedKey{Key: Key{Name: stmt.Name, Verifier: v}, NotBefore: stmt.NotBefore, NotAfter: stmt.NotAfter}
	p.Keys = append(p.Keys, k)
	return k, nil
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
