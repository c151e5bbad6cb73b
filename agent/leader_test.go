package agent_test

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ferry-gitops/ferry/agent"
)

// Two replicas on one cache: both serve it, one leads (imports, reconciles, publishes). When
// the leader stops, it releases the Lease and the other takes over at once, and imports the
// next bundle; what one imports the other serves.
func TestLeaderElection(t *testing.T) {
	h := newHarness(t, "agent-leader")
	h.cfg.LeaderElection.Enabled = true
	h.cfg.LeaderElection.Name = "ferry-sync"
	timing := agent.Options{LeaseDuration: 4 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: 200 * time.Millisecond}
	ra, rb := timing, timing
	ra.Identity, rb.Identity = "replica-a", "replica-b"
	a := h.start(ra)
	waitFor(t, 15*time.Second, "replica-a leads", func() bool { return a.value("ferry_leader") == 1 })
	b := h.start(rb)
	waitFor(t, 10*time.Second, "replica-b serves", func() bool { code, _ := get(t, b.health+"/readyz"); return code == 200 })
	if b.value("ferry_leader") != 0 {
		t.Fatal("both replicas lead")
	}
	holder := func() string {
		l, err := h.cs.CoordinationV1().Leases(h.ns).Get(context.Background(), "ferry-sync", metav1.GetOptions{})
		if err != nil || l.Spec.HolderIdentity == nil {
			return ""
		}
		return *l.Spec.HolderIdentity
	}
	if got := holder(); got != "replica-a" {
		t.Fatalf("the Lease is held by %q, want replica-a", got)
	}

	b1 := h.bundle(1, "")
	dropTar(t, h.drop, "b1.tar", b1)
	waitFor(t, 15*time.Second, "bundle 1 accepted", func() bool { return h.state().Sequence == 1 })
	waitFor(t, 10*time.Second, "the follower serves bundle 1", func() bool {
		_, body := get(t, b.serve+"/v2/_catalog")
		return strings.Contains(body, "registry.example/app") && b.value("ferry_current_bundle_sequence") == 1
	})
	time.Sleep(500 * time.Millisecond)
	if a.value("ferry_bundles_accepted_total") != 1 || b.value("ferry_bundles_accepted_total") != 0 || len(b.loggedAccepted()) != 0 {
		t.Fatalf("accepted by a %v, by b %v: only the leader imports", a.value("ferry_bundles_accepted_total"), b.value("ferry_bundles_accepted_total"))
	}
	if st, ok := h.status(); !ok || st.Leader != "replica-a" || st.Current == nil || st.Current.Sequence != 1 {
		t.Fatalf("status: %+v (%v)", st, ok)
	}

	// The leader stops: it releases the Lease, and replica-b leads well before the lease
	// duration would have run out.
	stopped := time.Now()
	a.stop()
	waitFor(t, 3*time.Second, "replica-b leads", func() bool { return holder() == "replica-b" && b.value("ferry_leader") == 1 })
	t.Logf("replica-b took over %s after replica-a stopped", time.Since(stopped).Round(time.Millisecond))
	dropTar(t, h.drop, "b2.tar", h.bundle(2, b1.Root.Digest))
	waitFor(t, 15*time.Second, "bundle 2 accepted by the new leader", func() bool { return h.state().Sequence == 2 })
	waitFor(t, 5*time.Second, "counted by the new leader", func() bool { return b.value("ferry_bundles_accepted_total") == 1 })
	if got := b.loggedAccepted(); len(got) != 1 || got[0] != 2 {
		t.Fatalf("replica-b accepted %v, want [2]", got)
	}
	if !strings.Contains(a.logs.String(), "stopped leading") {
		t.Fatalf("replica-a's log does not say it stopped leading:\n%s", a.logs.String())
	}
}
