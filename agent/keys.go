package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/cache"
	"github.com/ferry-gitops/ferry/verify"
)

// Event reasons of key rotation.
const (
	ReasonKeyIntroduced = "KeyIntroduced"
	ReasonKeyRevoked    = "KeyRevoked"
)

// keySet is what key statements did to the pinned keys, as the cache keeps it beside its state
// (cache.KeySet): keys introduced, and keys retired (pinned or introduced). The trusted keys are
// the pinned keys and the introduced ones, less the retired ones.
type keySet struct {
	Introduced []keyEntry `json:"introduced"`
	Revoked    []keyEntry `json:"revoked"`
}

// keyEntry is one key a statement introduced or retired, and which bundle carried it.
type keyEntry struct {
	Name        string    `json:"name"`
	Fingerprint string    `json:"fingerprint"`
	PublicKey   string    `json:"publicKey,omitempty"`
	NotBefore   time.Time `json:"notBefore,omitzero"`
	NotAfter    time.Time `json:"notAfter,omitzero"`
	Bundle      uint64    `json:"bundle"`
	Time        time.Time `json:"time"`
}

// KeyStatus is one key as 'sync status' and the status ConfigMap show it.
type KeyStatus struct {
	Name        string    `json:"name"`
	Fingerprint string    `json:"fingerprint"`
	NotBefore   time.Time `json:"notBefore,omitzero"`
	NotAfter    time.Time `json:"notAfter,omitzero"`
	// Origin is "config" (pinned) or "bundle N" (introduced by a statement bundle N carried).
	Origin string `json:"origin"`
	// Revoked is set for a key a statement retired ("bundle N"): it is no longer trusted.
	Revoked string `json:"revoked,omitempty"`
}

func loadKeySet(c *cache.Cache) (keySet, error) {
	var ks keySet
	b, err := c.KeySet()
	if err != nil || b == nil {
		return ks, err
	}
	if err := json.Unmarshal(b, &ks); err != nil {
		return ks, fmt.Errorf("cache key set: %w", err)
	}
	return ks, nil
}

// apply returns base (the pinned keys' policy) with the key set applied: introduced keys added,
// retired keys removed and remembered as retired.
func (ks keySet) apply(base verify.Policy) (verify.Policy, error) {
	p := base
	p.Keys = slices.Clone(base.Keys)
	for _, e := range ks.Introduced {
		k, err := verify.ParsePublicKey(e.Name, []byte(e.PublicKey))
		if err != nil {
			return p, fmt.Errorf("cache key set: introduced key %q: %w", e.Name, err)
		}
		if slices.ContainsFunc(p.Keys, func(t verify.TrustedKey) bool { return fingerprint(t.Key) == e.Fingerprint }) {
			continue
		}
		p.Keys = append(p.Keys, verify.TrustedKey{Key: k, NotBefore: e.NotBefore, NotAfter: e.NotAfter})
	}
	for _, e := range ks.Revoked {
		p.Keys = slices.DeleteFunc(p.Keys, func(t verify.TrustedKey) bool { return fingerprint(t.Key) == e.Fingerprint })
		p.Revoked = append(p.Revoked, e.Fingerprint)
	}
	return p, nil
}

func fingerprint(k verify.Key) string {
	fp, _ := verify.Fingerprint(k.Verifier)
	return fp
}

// ImportPolicy is the policy the next bundle is decided against: base (the pinned keys, the
// configured floor minSequence) with the cache's key set applied (keys introduced and retired
// by key statements), and the clock floor (the current bundle's creation time). 'sync run' and
// 'sync import' both decide with it.
func ImportPolicy(base verify.Policy, c *cache.Cache) (verify.Policy, error) {
	ks, err := loadKeySet(c)
	if err != nil {
		return base, err
	}
	p, err := ks.apply(base)
	if err != nil {
		return base, err
	}
	rec, err := c.Current()
	if err != nil {
		return p, err
	}
	if rec != nil {
		p.LastCreated = rec.Created
	}
	return p, nil
}

func (a *Agent) importPolicy(c *cache.Cache) (verify.Policy, error) { return ImportPolicy(a.policy, c) }

// attachmentsOf returns the attachments (manifests before the root) of a bundle's index.json
// as the record keeps it.
func attachmentsOf(rec cache.Record) ([]ocispec.Descriptor, error) {
	var idx ocispec.Index
	if err := json.Unmarshal(rec.Index, &idx); err != nil {
		return nil, fmt.Errorf("bundle %d: index: %w", rec.Sequence, err)
	}
	var out []ocispec.Descriptor
	for _, d := range idx.Manifests {
		if d.Annotations[ocispec.AnnotationRefName] == bundle.RootRef {
			return out, nil
		}
		out = append(out, d)
	}
	return nil, fmt.Errorf("bundle %d: index names no root", rec.Sequence)
}

// ApplyKeyStatements applies the key statements of rec, a bundle the cache accepted (verify
// checked them before accepting it, against the same keys), to the cache's key set and writes
// it beside the cache's state (atomically and durably), so that they are used from the next
// bundle on. It returns the changes made. Applying a bundle's statements again changes nothing:
// the agent does so for the current bundle when it starts leading, in case it stopped between
// the import's commit and the key set's write.
func ApplyKeyStatements(ctx context.Context, c *cache.Cache, base verify.Policy, rec cache.Record) ([]verify.KeyChange, error) {
	atts, err := attachmentsOf(rec)
	if err != nil {
		return nil, err
	}
	raws, err := verify.KeyStatements(ctx, c, atts)
	if err != nil || len(raws) == 0 {
		return nil, err
	}
	ks, err := loadKeySet(c)
	if err != nil {
		return nil, err
	}
	p, err := ks.apply(base)
	if err != nil {
		return nil, err
	}
	all, err := p.ApplyStatements(raws)
	if err != nil {
		return nil, fmt.Errorf("bundle %d: %w", rec.Sequence, err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	var changes []verify.KeyChange
	for _, ch := range all {
		if !ch.Changed {
			continue
		}
		changes = append(changes, ch)
		e := keyEntry{Name: ch.Statement.Name, Fingerprint: ch.Fingerprint, NotBefore: ch.Statement.NotBefore, NotAfter: ch.Statement.NotAfter, Bundle: rec.Sequence, Time: now}
		if ch.Statement.Revoke {
			ks.Introduced = slices.DeleteFunc(ks.Introduced, func(x keyEntry) bool { return x.Fingerprint == ch.Fingerprint })
			ks.Revoked = append(ks.Revoked, e)
			continue
		}
		e.PublicKey = ch.Statement.PublicKey
		ks.Introduced = append(ks.Introduced, e)
	}
	if len(changes) == 0 {
		return nil, nil
	}
	b, err := json.MarshalIndent(ks, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := c.WriteKeySet(b); err != nil {
		return nil, err
	}
	return changes, nil
}

// applyKeyStatements is ApplyKeyStatements on the leader: each change is logged and recorded as
// an Event.
func (l *leaderRun) applyKeyStatements(ctx context.Context, log *slog.Logger, rec cache.Record) error {
	changes, err := ApplyKeyStatements(ctx, l.c, l.a.policy, rec)
	if err != nil {
		return err
	}
	for _, ch := range changes {
		name, fp := ch.Statement.Name, ch.Fingerprint
		if ch.Statement.Revoke {
			log.Warn("key revoked by a key statement: its signatures are no longer accepted", "key", name, "fingerprint", fp, "bundle", rec.Sequence, "signedBy", ch.SignedBy)
			l.rep.event("Normal", ReasonKeyRevoked, fmt.Sprintf("key %q (%s) revoked by a statement in bundle %d, signed by %v", name, fp, rec.Sequence, ch.SignedBy))
			continue
		}
		log.Info("key introduced by a key statement: trusted from the next bundle on", "key", name, "fingerprint", fp, "bundle", rec.Sequence, "signedBy", ch.SignedBy)
		l.rep.event("Normal", ReasonKeyIntroduced, fmt.Sprintf("key %q (%s) introduced by a statement in bundle %d, signed by %v", name, fp, rec.Sequence, ch.SignedBy))
	}
	return nil
}

// keysAtStart applies the current bundle's key statements again (see applyKeyStatements).
func (l *leaderRun) keysAtStart(ctx context.Context) {
	rec, err := l.c.Current()
	if err != nil || rec == nil {
		return
	}
	if err := l.applyKeyStatements(ctx, l.log, *rec); err != nil && ctx.Err() == nil {
		l.log.Error("cannot apply the current bundle's key statements", "bundle", rec.Sequence, "err", err)
	}
}

// TrustedKeys lists the keys of base (the pinned keys, named by their paths) with the key set
// the cache keeps applied: each trusted key with its window and where it came from, then the
// retired ones. base may be nil: only the key set's keys are listed.
func TrustedKeys(cfg *Config, c *cache.Cache) ([]KeyStatus, error) {
	ks, err := loadKeySet(c)
	if err != nil {
		return nil, err
	}
	var out []KeyStatus
	revoked := map[string]keyEntry{}
	for _, e := range ks.Revoked {
		revoked[e.Fingerprint] = e
	}
	seen := map[string]bool{}
	add := func(s KeyStatus) {
		if seen[s.Fingerprint] {
			return
		}
		seen[s.Fingerprint] = true
		if e, ok := revoked[s.Fingerprint]; ok {
			s.Revoked = fmt.Sprintf("bundle %d", e.Bundle)
		}
		out = append(out, s)
	}
	if cfg != nil {
		for i, k := range cfg.Keys {
			key, err := verify.LoadPublicKey(k.Path)
			if err != nil {
				return nil, fmt.Errorf("keys[%d].path: %w", i, err)
			}
			add(KeyStatus{Name: k.Path, Fingerprint: fingerprint(key), NotBefore: k.NotBefore, NotAfter: k.NotAfter, Origin: "config"})
		}
	}
	for _, e := range ks.Introduced {
		add(KeyStatus{Name: e.Name, Fingerprint: e.Fingerprint, NotBefore: e.NotBefore, NotAfter: e.NotAfter, Origin: fmt.Sprintf("bundle %d", e.Bundle)})
	}
	for _, e := range ks.Revoked {
		add(KeyStatus{Name: e.Name, Fingerprint: e.Fingerprint, NotBefore: e.NotBefore, NotAfter: e.NotAfter, Origin: "", Revoked: fmt.Sprintf("bundle %d", e.Bundle)})
	}
	return out, nil
}
