package agent_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ferry-gitops/ferry/agent"
	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/internal/testbundle"
	"github.com/ferry-gitops/ferry/signing"
	"github.com/ferry-gitops/ferry/verify"
)

// clock is a clock a test moves.
type clock struct{ t atomic.Int64 }

func newClock(t time.Time) *clock { c := &clock{}; c.set(t); return c }
func (c *clock) set(t time.Time)  { c.t.Store(t.UnixNano()) }
func (c *clock) now() time.Time   { return time.Unix(0, c.t.Load()) }

func condition(st agent.Status, typ string) (metav1.Condition, bool) {
	for _, c := range st.Conditions {
		if c.Type == typ {
			return c, true
		}
	}
	return metav1.Condition{}, false
}

// When the current bundle expires (onExpiry: keep, the default), the agent goes on serving and
// reconciling it and says so: ferry_current_bundle_expired is 1, /readyz (still 200) carries an
// "expired:" warning, the status ConfigMap's Expired condition is True, and a BundleExpired
// Warning Event is recorded once. A fresh bundle clears it all.
func TestExpiredCurrentBundleIsReported(t *testing.T) {
	h := newHarness(t, "agent-expiry")
	clk := newClock(now())
	r := h.start(agent.Options{Now: clk.now})
	b1 := h.bundle(1, "")
	dropTar(t, h.drop, "b1.tar", b1)
	waitFor(t, 15*time.Second, "bundle 1 accepted", func() bool { return h.state().Sequence == 1 })
	waitFor(t, 15*time.Second, "Expired False in the status", func() bool {
		st, ok := h.status()
		c, has := condition(st, agent.ConditionExpired)
		return ok && has && c.Status == metav1.ConditionFalse
	})
	if v := r.value("ferry_current_bundle_expired"); v != 0 {
		t.Fatalf("ferry_current_bundle_expired = %v before expiry", v)
	}
	// The metrics follow the cache on every replica, once per poll.
	waitFor(t, 10*time.Second, "ferry_current_bundle_expiry_timestamp_seconds set", func() bool {
		return r.value("ferry_current_bundle_expiry_timestamp_seconds") == float64(b1.Bundle.Expires.Unix())
	})

	clk.set(b1.Bundle.Expires.Add(time.Minute))
	waitFor(t, 10*time.Second, "ferry_current_bundle_expired 1", func() bool { return r.value("ferry_current_bundle_expired") == 1 })
	waitFor(t, 10*time.Second, "/readyz warns", func() bool {
		code, body := get(t, r.health+"/readyz")
		return code == 200 && strings.Contains(body, "expired: current bundle 1") && strings.Contains(body, "onExpiry: keep")
	})
	waitFor(t, 15*time.Second, "Expired True in the status", func() bool {
		st, ok := h.status()
		c, has := condition(st, agent.ConditionExpired)
		s, _ := condition(st, agent.ConditionStalled)
		return ok && has && c.Status == metav1.ConditionTrue && c.Reason == agent.ReasonBundleExpired && s.Status == metav1.ConditionFalse
	})
	waitFor(t, 10*time.Second, "a BundleExpired Event", func() bool {
		evs := h.events(agent.ReasonBundleExpired)
		return len(evs) == 1 && evs[0].Type == "Warning" && strings.Contains(evs[0].Note, "bundle 1")
	})
	// keep: reconciling goes on.
	time.Sleep(time.Second)
	if n := len(h.events(agent.ReasonBundleExpired)); n != 1 {
		t.Fatalf("%d BundleExpired Events, want one", n)
	}

	// A fresh bundle, packed after the first expired: accepted (it is fresh), and the alert ends.
	b2 := h.bundle(2, b1.Root.Digest)
	b2.Bundle.Created = b1.Bundle.Expires
	b2.Bundle.Expires = b1.Bundle.Expires.Add(30 * 24 * time.Hour)
	b2.Write(t, h.signer.Sign)
	dropTar(t, h.drop, "b2.tar", b2)
	waitFor(t, 15*time.Second, "bundle 2 accepted", func() bool { return h.state().Sequence == 2 })
	waitFor(t, 10*time.Second, "ferry_current_bundle_expired 0", func() bool { return r.value("ferry_current_bundle_expired") == 0 })
	waitFor(t, 15*time.Second, "Expired False again", func() bool {
		st, ok := h.status()
		c, has := condition(st, agent.ConditionExpired)
		return ok && has && c.Status == metav1.ConditionFalse && st.Current.Sequence == 2
	})
}

// onExpiry: stop-reconcile stops reconciling once the current bundle expires (the Stalled
// condition is True, /readyz says why) and keeps serving it.
func TestExpiredBundleStopsReconcilingWhenConfigured(t *testing.T) {
	h := newHarness(t, "agent-expiry-stop")
	h.cfg.OnExpiry = agent.OnExpiryStopReconcile
	b1 := h.bundle(1, "")
	clk := newClock(b1.Bundle.Expires.Add(-time.Second)) // fresh when imported, expired a second later
	dropTar(t, h.drop, "b1.tar", b1)
	r := h.start(agent.Options{Now: clk.now})
	waitFor(t, 15*time.Second, "bundle 1 accepted", func() bool { return h.state().Sequence == 1 })
	clk.set(b1.Bundle.Expires.Add(time.Minute))
	waitFor(t, 15*time.Second, "Stalled True in the status", func() bool {
		st, ok := h.status()
		c, has := condition(st, agent.ConditionStalled)
		return ok && has && c.Status == metav1.ConditionTrue && c.Reason == agent.ReasonReconcileStopped
	})
	waitFor(t, 10*time.Second, "/readyz says the agent stopped reconciling", func() bool {
		_, body := get(t, r.health+"/readyz")
		return strings.Contains(body, "onExpiry: stop-reconcile")
	})
	// No reconciliation after that (intervals.reconcile is 2s here).
	reconciles := func() int {
		n := 0
		for _, line := range strings.Split(r.logs.String(), "\n") {
			if strings.Contains(line, `"msg":"reconciled`) {
				n++
			}
		}
		return n
	}
	time.Sleep(3 * time.Second) // a reconciliation begun before the clock moved ends
	before := reconciles()
	time.Sleep(5 * time.Second)
	if after := reconciles(); after != before {
		t.Fatalf("reconciled %d times after the bundle expired with onExpiry: stop-reconcile", after-before)
	}
	// Still served.
	if code, body := get(t, r.serve+"/v2/_catalog"); code != 200 || !strings.Contains(body, "registry.example/app") {
		t.Fatalf("the expired bundle is no longer served: %d %s", code, body)
	}
}

// minSequence refuses bundles at or below it even with an empty cache (a lost volume), on the
// rollback check naming the floor; a clock set back before the current bundle's creation
// imports nothing and says which clock and bundle, and the bundle is imported once the clock is
// right again.
func TestFloorsSurviveALostCacheAndABackwardClock(t *testing.T) {
	h := newHarness(t, "agent-floors")
	h.cfg.MinSequence = 5
	clk := newClock(now())
	r := h.start(agent.Options{Now: clk.now})
	old := h.bundle(5, "")
	dropTar(t, h.drop, "b5.tar", old)
	waitFor(t, 15*time.Second, "bundle 5 rejected on rollback", func() bool {
		return r.value(`ferry_bundles_rejected_total{check="rollback"}`) == 1
	})
	if rejs := h.rejections(); len(rejs) != 1 || !strings.Contains(rejs[0].Message, "minSequence 5") {
		t.Fatalf("rejections %+v, want one naming minSequence 5", rejs)
	}
	b6 := h.bundle(6, "")
	dropTar(t, h.drop, "b6.tar", b6)
	waitFor(t, 15*time.Second, "bundle 6 accepted", func() bool { return h.state().Sequence == 6 })

	clk.set(testbundle.Created.Add(-time.Hour)) // before bundle 6 was created
	b7 := h.bundle(7, b6.Root.Digest)
	dropTar(t, h.drop, "b7.tar", b7)
	waitFor(t, 15*time.Second, "the backward clock logged", func() bool {
		l := r.logs.String()
		return strings.Contains(l, "the clock moved backwards") && strings.Contains(l, "bundle 7")
	})
	if st := h.state(); st.Sequence != 6 {
		t.Fatalf("imported with the clock set back: state %+v", st)
	}
	if n := len(h.rejections()); n != 1 {
		t.Fatalf("the backward clock was recorded as the bundle's rejection (%d rejections)", n)
	}
	clk.set(now())
	waitFor(t, 15*time.Second, "bundle 7 accepted once the clock is right", func() bool { return h.state().Sequence == 7 })
}

// keyStatementSign signs the root with s and attaches the key statements.
func keyStatementSign(s *testbundle.Signer, statements ...[]byte) testbundle.SignFunc {
	return func(t testing.TB, l *bundle.Layout, root ocispec.Descriptor) []ocispec.Descriptor {
		atts := s.Sign(t, l, root)
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

func signedStatement(t *testing.T, name string, subject *testbundle.Signer, revoke bool, by *testbundle.Signer) []byte {
	t.Helper()
	body, _ := json.Marshal(verify.KeyStatement{Name: name, PublicKey: string(subject.PublicPEM), Revoke: revoke})
	s := &verify.SignedKeyStatement{Statement: body}
	if err := s.Sign(by.SV, "current"); err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(s)
	return raw
}

// The agent rotates from its pinned key A to B over three bundles, keeps the key set in the
// cache folder (keys.json beside state.json), survives a restart with it, reports the keys in
// its status and Events, and then refuses a bundle signed by A alone.
func TestAgentRotatesKeys(t *testing.T) {
	h := newHarness(t, "agent-rotate")
	a, b := h.signer, testbundle.NewSigner(t)
	r := h.start(agent.Options{})
	b1 := testbundle.New(t, 1, "", keyStatementSign(a, signedStatement(t, "ops-b", b, false, a)))
	dropTar(t, h.drop, "b1.tar", b1)
	waitFor(t, 15*time.Second, "bundle 1 accepted", func() bool { return h.state().Sequence == 1 })
	waitFor(t, 10*time.Second, "a KeyIntroduced Event", func() bool { return len(h.events(agent.ReasonKeyIntroduced)) == 1 })
	if _, err := os.Stat(filepath.Join(h.cache, "keys.json")); err != nil {
		t.Fatalf("no key set beside the state: %v", err)
	}
	b2 := testbundle.New(t, 2, b1.Root.Digest, b.Sign)
	dropTar(t, h.drop, "b2.tar", b2)
	waitFor(t, 15*time.Second, "bundle 2 (signed by B) accepted", func() bool { return h.state().Sequence == 2 })

	// Restarted, the agent still trusts B: the key set is in the cache folder.
	r.stop()
	r = h.start(agent.Options{})
	b3 := testbundle.New(t, 3, b2.Root.Digest, keyStatementSign(b, signedStatement(t, "a", a, true, b)))
	dropTar(t, h.drop, "b3.tar", b3)
	waitFor(t, 15*time.Second, "bundle 3 (signed by B, revoking A) accepted", func() bool { return h.state().Sequence == 3 })
	waitFor(t, 10*time.Second, "a KeyRevoked Event", func() bool { return len(h.events(agent.ReasonKeyRevoked)) == 1 })
	waitFor(t, 10*time.Second, "the status lists B trusted and A revoked", func() bool {
		st, ok := h.status()
		if !ok || len(st.Keys) != 2 {
			return false
		}
		var aRevoked, bTrusted bool
		for _, k := range st.Keys {
			aRevoked = aRevoked || (k.Origin == "config" && k.Revoked == "bundle 3")
			bTrusted = bTrusted || (k.Name == "ops-b" && k.Origin == "bundle 1" && k.Revoked == "")
		}
		return aRevoked && bTrusted
	})
	b4 := testbundle.New(t, 4, b3.Root.Digest, a.Sign)
	dropTar(t, h.drop, "b4.tar", b4)
	waitFor(t, 15*time.Second, "bundle 4 (signed by A alone) rejected on its signature", func() bool {
		return r.value(`ferry_bundles_rejected_total{check="signature"}`) == 1
	})
	if st := h.state(); st.Sequence != 3 {
		t.Fatalf("state %+v after the bundle signed by the revoked key, want 3", st)
	}
}
