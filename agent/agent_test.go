package agent_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferry-gitops/ferry/agent"
	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/cache"
	"github.com/ferry-gitops/ferry/internal/testbundle"
)

// A bundle dropped as a tar is verified, imported, served and published: the cache's current
// bundle, the metrics, the status ConfigMap, an Event and the registry all say bundle 1.
func TestDirSourceAcceptsBundle(t *testing.T) {
	h := newHarness(t, "agent-accept")
	r := h.start(agent.Options{})
	b1 := h.bundle(1, "")
	dropTar(t, h.drop, "b1.tar", b1)

	waitFor(t, 15*time.Second, "bundle 1 accepted", func() bool { return h.state().Sequence == 1 })
	if st := h.state(); st.Root != b1.Root.Digest {
		t.Fatalf("current root %s, want bundle 1's %s", st.Root, b1.Root.Digest)
	}
	waitFor(t, 5*time.Second, "the metrics say bundle 1", func() bool {
		return r.value("ferry_bundles_accepted_total") == 1 && r.value("ferry_current_bundle_sequence") == 1
	})
	if v, ok := r.metric("ferry_import_seconds_count{result=\"accepted\"}"); !ok || v != 1 {
		t.Fatalf("ferry_import_seconds_count{result=accepted} = %v (%v), want 1", v, ok)
	}
	if v := r.value("ferry_import_bytes_total"); v < float64(b1.Layer.Size) {
		t.Fatalf("ferry_import_bytes_total = %v, less than one layer of the bundle (%d)", v, b1.Layer.Size)
	}
	if _, ok := r.metric(`ferry_bundles_rejected_total{check="rollback"}`); ok {
		t.Fatal("a rejection was counted")
	}
	waitFor(t, 5*time.Second, "the status ConfigMap says bundle 1", func() bool {
		st, ok := h.status()
		return ok && st.Current != nil && st.Current.Sequence == 1 && st.Current.Root == b1.Root.Digest && st.Current.Items == 2 && len(st.Rejections) == 0
	})
	waitFor(t, 10*time.Second, "a BundleAccepted Event", func() bool { return len(h.events(agent.ReasonBundleAccepted)) == 1 })
	// The registry serves the new bundle's image at once.
	code, body := get(t, r.serve+"/v2/_catalog")
	if code != 200 || !strings.Contains(body, "registry.example/app") {
		t.Fatalf("served catalog: %d %s", code, body)
	}
	if _, err := os.Stat(filepath.Join(h.drop, "b1.tar")); err != nil {
		t.Fatalf("the accepted bundle was moved: %v", err)
	}
	// Nothing is imported twice: many polls later, still one import.
	time.Sleep(time.Second)
	if got := r.loggedAccepted(); len(got) != 1 || r.value("ferry_bundles_accepted_total") != 1 {
		t.Fatalf("accepted %v (metric %v), want bundle 1 once", got, r.value("ferry_bundles_accepted_total"))
	}
}

// A split bundle waits until every part is present at its recorded size: nothing happens
// while parts are missing or short, and the bundle is accepted once the last part is whole.
func TestPartsWaitForTheLastPart(t *testing.T) {
	h := newHarness(t, "agent-parts")
	r := h.start(agent.Options{})
	list, parts := splitParts(t, h.bundle(1, ""), "b1.tar", 8<<10)
	if len(parts) < 3 {
		t.Fatalf("split into %d parts; the test wants at least 3", len(parts))
	}
	// The part list first, then the parts one by one but the last.
	copyFile(t, list, filepath.Join(h.drop, filepath.Base(list)))
	for _, p := range parts[:len(parts)-1] {
		time.Sleep(150 * time.Millisecond) // more than a poll between parts
		copyFile(t, p, filepath.Join(h.drop, filepath.Base(p)))
	}
	// The last part, cut short: still waiting.
	last, err := os.ReadFile(parts[len(parts)-1])
	if err != nil {
		t.Fatal(err)
	}
	lastPath := filepath.Join(h.drop, filepath.Base(parts[len(parts)-1]))
	if err := os.WriteFile(lastPath, last[:len(last)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // ten polls
	if st := h.state(); st.Sequence != 0 {
		t.Fatalf("bundle %d imported before its last part was whole", st.Sequence)
	}
	if r.value("ferry_bundles_accepted_total") != 0 || r.value(`ferry_bundles_rejected_total{check="part"}`) != 0 || len(h.rejections()) != 0 {
		t.Fatalf("an incomplete bundle was accepted or rejected: accepted %v, rejections %+v", r.value("ferry_bundles_accepted_total"), h.rejections())
	}
	if !strings.Contains(r.logs.String(), "waiting") || !strings.Contains(r.logs.String(), "parts present at their recorded size") {
		t.Fatalf("the log does not say the bundle is waiting for its parts:\n%s", r.logs.String())
	}
	if err := os.WriteFile(lastPath, last, 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "bundle 1 accepted once its last part is whole", func() bool { return h.state().Sequence == 1 })
	waitFor(t, 5*time.Second, "accepted counted", func() bool { return r.value("ferry_bundles_accepted_total") == 1 })
}

// Bundles dropped together are imported in ascending sequence, whatever their names say.
func TestBundlesImportedInSequenceOrder(t *testing.T) {
	h := newHarness(t, "agent-order")
	r := h.start(agent.Options{})
	b1 := h.bundle(1, "")
	b2 := h.bundle(2, b1.Root.Digest)
	b3 := h.bundle(3, b2.Root.Digest)
	dropTar(t, h.drop, "x-1.tar", b1)
	waitFor(t, 15*time.Second, "bundle 1 accepted", func() bool { return h.state().Sequence == 1 })
	// Named so that listing order is 3 before 2; 2 is a bundle directory, 3 a tar.
	copyDir(t, b2.Dir, filepath.Join(h.drop, "b-second"))
	dropTar(t, h.drop, "a-third.tar", b3)
	waitFor(t, 15*time.Second, "bundle 3 accepted", func() bool { return h.state().Sequence == 3 && len(r.loggedAccepted()) == 3 })
	if got := r.loggedAccepted(); len(got) != 3 || got[0] != 1 || got[1] != 2 || got[2] != 3 {
		t.Fatalf("accepted in the order %v, want [1 2 3]", got)
	}
	if h.state().Root != b3.Root.Digest || len(h.rejections()) != 0 {
		t.Fatalf("current %+v, rejections %+v", h.state(), h.rejections())
	}
	waitFor(t, 5*time.Second, "accepted counted", func() bool {
		return r.value("ferry_bundles_accepted_total") == 3 && r.value("ferry_current_bundle_sequence") == 3
	})
}

// A rollback and a bundle signed by a key that is not pinned are rejected: counted by check,
// recorded in the cache, published in the status ConfigMap, reported by an Event, left where
// they were, and the current bundle stays. They are not tried again, not even by a restarted
// agent, until they change.
func TestRejectedBundlesAreReportedAndLeft(t *testing.T) {
	h := newHarness(t, "agent-reject")
	r := h.start(agent.Options{})
	b1 := h.bundle(1, "")
	b2 := h.bundle(2, b1.Root.Digest)
	dropTar(t, h.drop, "b1.tar", b1)
	waitFor(t, 15*time.Second, "bundle 1 accepted", func() bool { return h.state().Sequence == 1 })
	dropTar(t, h.drop, "b2.tar", b2)
	waitFor(t, 15*time.Second, "bundle 2 accepted", func() bool { return h.state().Sequence == 2 })

	// An older bundle: sequence 1 again, another root.
	old := h.bundle(1, "")
	old.Bundle.Expires = old.Bundle.Expires.Add(-time.Hour)
	old.Write(t, h.signer.Sign)
	if old.Root.Digest == b1.Root.Digest {
		t.Fatal("the older bundle has bundle 1's root")
	}
	oldPath := dropTar(t, h.drop, "old.tar", old)
	// Bundle 3 signed by a key the agent does not pin.
	stranger := testbundle.NewSigner(t)
	b3 := testbundle.New(t, 3, b2.Root.Digest, stranger.Sign)
	strangerPath := dropTar(t, h.drop, "b3.tar", b3)

	waitFor(t, 15*time.Second, "both rejected", func() bool {
		return r.value(`ferry_bundles_rejected_total{check="rollback"}`) == 1 && r.value(`ferry_bundles_rejected_total{check="signature"}`) == 1
	})
	if st := h.state(); st.Sequence != 2 || st.Root != b2.Root.Digest {
		t.Fatalf("after the rejections the current bundle is %+v, want bundle 2", st)
	}
	for _, p := range []string{oldPath, strangerPath} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("a rejected bundle was not left where it was: %v", err)
		}
	}
	rejs := h.rejections()
	if len(rejs) != 2 {
		t.Fatalf("the cache records %d rejections, want 2: %+v", len(rejs), rejs)
	}
	byCheck := map[string]int{}
	for i, rj := range rejs {
		byCheck[rj.Check] = i
		if rj.Source != "dir "+h.drop || rj.Identity == "" || rj.State.Sequence != 2 || rj.Message == "" {
			t.Fatalf("rejection recorded as %+v", rj)
		}
	}
	rb, sig := rejs[byCheck[string(bundle.CheckRollback)]], rejs[byCheck[string(bundle.CheckSignature)]]
	if rb.Candidate != "old.tar" || rb.Sequence != 1 || rb.Root != old.Root.Digest || !strings.Contains(rb.Message, "rollback") {
		t.Fatalf("the rollback is recorded as %+v", rb)
	}
	if sig.Candidate != "b3.tar" || sig.Sequence != 3 || sig.Root != b3.Root.Digest || sig.Fix == "" {
		t.Fatalf("the foreign signature is recorded as %+v", sig)
	}
	waitFor(t, 10*time.Second, "BundleRejected Events for both", func() bool {
		evs := h.events(agent.ReasonBundleRejected)
		var rollback, signature bool
		for _, e := range evs {
			if e.Regarding.Kind != "ConfigMap" || e.Regarding.Name != agent.DefaultStatusConfigMap || e.Type != "Warning" {
				t.Fatalf("Event %s regards %s %s (%s)", e.Name, e.Regarding.Kind, e.Regarding.Name, e.Type)
			}
			rollback = rollback || strings.Contains(e.Note, "rollback") && strings.Contains(e.Note, "old.tar")
			signature = signature || strings.Contains(e.Note, "(signature)") && strings.Contains(e.Note, "b3.tar")
		}
		return rollback && signature
	})
	st, ok := h.status()
	if !ok || st.Current == nil || st.Current.Sequence != 2 || len(st.Rejections) != 2 {
		t.Fatalf("status ConfigMap: %+v (%v)", st, ok)
	}
	// Not tried again: many polls later, still one of each.
	time.Sleep(time.Second)
	if r.value(`ferry_bundles_rejected_total{check="rollback"}`) != 1 || r.value(`ferry_bundles_rejected_total{check="signature"}`) != 1 || len(h.rejections()) != 2 {
		t.Fatalf("a rejected bundle was tried again: %d rejections recorded", len(h.rejections()))
	}
	// A restarted agent remembers them (the rejections live in the cache).
	r.stop()
	r2 := h.start(agent.Options{})
	waitFor(t, 10*time.Second, "the restarted agent answers", func() bool { _, ok := r2.metric("ferry_leader"); return ok })
	time.Sleep(time.Second)
	if n := len(h.rejections()); n != 2 || r2.value(`ferry_bundles_rejected_total{check="rollback"}`) != 0 || r2.value(`ferry_bundles_rejected_total{check="signature"}`) != 0 {
		t.Fatalf("the restarted agent rejected again: %d recorded, metrics rollback %v signature %v", n,
			r2.value(`ferry_bundles_rejected_total{check="rollback"}`), r2.value(`ferry_bundles_rejected_total{check="signature"}`))
	}
	// Changed (signed by the pinned key now), the third bundle is tried again and accepted.
	b3.Write(t, h.signer.Sign)
	dropTar(t, h.drop, "b3.tar", b3)
	waitFor(t, 15*time.Second, "bundle 3 accepted once re-signed", func() bool { return h.state().Sequence == 3 })
}

// /healthz answers at once; /readyz is ready once the registry serves, warning while the leader
// has no bundle to reconcile, and plain "ok" once the first reconciliation finished; /metrics
// lists the agent's metrics.
func TestHealthEndpoints(t *testing.T) {
	h := newHarness(t, "agent-health")
	r := h.start(agent.Options{})
	waitFor(t, 10*time.Second, "/healthz", func() bool { code, body := get(t, r.health+"/healthz"); return code == 200 && body == "ok\n" })
	waitFor(t, 10*time.Second, "/readyz warns", func() bool {
		code, body := get(t, r.health+"/readyz")
		return code == 200 && strings.HasPrefix(body, "ok\nwarnings:\n") && strings.Contains(body, "reconcile: no bundle accepted yet: waiting for one from dir "+h.drop)
	})
	if v, ok := r.metric("ferry_leader"); !ok || v != 1 {
		t.Fatalf("ferry_leader = %v (%v), want 1 (no election: always leading)", v, ok)
	}
	_, metrics := get(t, r.health+"/metrics")
	for _, name := range []string{"ferry_bundles_accepted_total", "ferry_import_bytes_total", "ferry_current_bundle_sequence", "ferry_drift_corrections_total",
		"ferry_leader", "go_goroutines", "process_open_fds"} {
		if !strings.Contains(metrics, name) {
			t.Fatalf("/metrics lacks %s:\n%s", name, metrics)
		}
	}
	dropTar(t, h.drop, "b1.tar", h.bundle(1, ""))
	waitFor(t, 15*time.Second, "/readyz without warnings after the first reconciliation", func() bool {
		code, body := get(t, r.health+"/readyz")
		return code == 200 && body == "ok\n"
	})
	if _, metrics = get(t, r.health+"/metrics"); !strings.Contains(metrics, `ferry_import_seconds_bucket{result="accepted",le="+Inf"} 1`) {
		t.Fatalf("/metrics has no import time of the accepted bundle:\n%s", metrics)
	}
	if code, _ := get(t, r.serve+"/v2/"); code != 200 {
		t.Fatalf("the registry answers /v2/ with %d", code)
	}
}

// The agent stops cleanly when its context ends, even while waiting for the cache.
func TestStopsCleanly(t *testing.T) {
	h := newHarness(t, "agent-stop")
	r := h.start(agent.Options{})
	waitFor(t, 10*time.Second, "the agent serves", func() bool { code, _ := get(t, r.health+"/healthz"); return code == 200 })
	start := time.Now()
	r.stop()
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("stopping took %s", d)
	}
	if _, err := os.Stat(filepath.Join(h.cache, "ferry-cache")); err != nil {
		t.Fatalf("the agent did not make its cache: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := r.a.Run(ctx); err == nil || !strings.Contains(err.Error(), "already") {
		t.Fatalf("Run a second time: %v", err)
	}
}

// An old copy of a bundle that garbage collection has since dropped is no rollback attempt:
// a restarted agent finds it still in the drop directory and skips it quietly.
func TestCollectedBundlesLeftOnTheMediumAreSkipped(t *testing.T) {
	h := newHarness(t, "agent-collected")
	h.cfg.Retention.Keep = 1
	r := h.start(agent.Options{})
	b1 := h.bundle(1, "")
	b2 := h.bundle(2, b1.Root.Digest)
	dropTar(t, h.drop, "b1.tar", b1)
	waitFor(t, 15*time.Second, "bundle 1 accepted", func() bool { return h.state().Sequence == 1 })
	dropTar(t, h.drop, "b2.tar", b2)
	waitFor(t, 15*time.Second, "bundle 2 accepted", func() bool { return h.state().Sequence == 2 })
	c, err := cache.OpenReader(h.cache)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "bundle 1 collected (retention.keep 1)", func() bool {
		recs, err := c.Records()
		return err == nil && len(recs) == 1
	})
	r.stop()

	r = h.start(agent.Options{})
	waitFor(t, 15*time.Second, "the restarted agent ready", func() bool { return r.value("ferry_current_bundle_sequence") == 2 })
	time.Sleep(time.Second) // ten polls of the drop directory, which still holds b1.tar
	if rej := h.rejections(); len(rej) != 0 || r.value(`ferry_bundles_rejected_total{check="rollback"}`) != 0 {
		t.Fatalf("the collected bundle 1 left on the medium was reported: %+v", rej)
	}
	if h.state().Sequence != 2 {
		t.Fatalf("current %+v, want 2", h.state())
	}
}
