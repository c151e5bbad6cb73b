package agent_test

import (
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/ferry-gitops/ferry/agent"
	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/internal/testbundle"
)

// The agent refuses a bundle carrying a Ferry agent image older than itself (its own version is
// the floor) or than the newest agent image it accepted, records the rejection with check
// agent-rollback, and keeps the current bundle; a bundle without an agent image still passes.
func TestAgentRefusesAnOlderAgentImage(t *testing.T) {
	h := newHarness(t, "agent-self-rollback")
	r := h.start(agent.Options{Version: "v1.5.0"})
	withAgent := func(seq uint64, previous digest.Digest, version string) *testbundle.Fixture {
		f := testbundle.New(t, seq, previous, nil)
		if version == "" {
			f.Write(t, h.signer.Sign)
			return f
		}
		f.AddImage(t, "ferry-sync", h.signer.Sign, testbundle.Platform{Platform: "linux/amd64", Labels: testbundle.AgentLabels(version)})
		return f
	}
	rejected := func(n int) bool {
		return r.value(`ferry_bundles_rejected_total{check="`+string(bundle.CheckAgentRollback)+`"}`) == float64(n)
	}

	dropTar(t, h.drop, "b1.tar", withAgent(1, "", "v1.0.0"))
	waitFor(t, 15*time.Second, "bundle 1 (agent v1.0.0, below the running v1.5.0) rejected", func() bool { return rejected(1) })
	if st := h.state(); st.Sequence != 0 {
		t.Fatalf("bundle 1 became current: %+v", st)
	}
	rejs := h.rejections()
	if len(rejs) != 1 || rejs[0].Check != string(bundle.CheckAgentRollback) || rejs[0].Item != "ferry-sync" ||
		!strings.Contains(rejs[0].Message, "v1.0.0 < v1.5.0, the running agent's version") || rejs[0].Fix != "pack a bundle with agent image >= v1.5.0" {
		t.Fatalf("rejections %+v, want one of item ferry-sync, check agent-rollback, naming v1.0.0 < v1.5.0", rejs)
	}

	b2 := withAgent(2, "", "v2.0.0")
	dropTar(t, h.drop, "b2.tar", b2)
	waitFor(t, 15*time.Second, "bundle 2 (agent v2.0.0) accepted", func() bool { return h.state().Sequence == 2 })
	if st := h.state(); st.AgentVersion != "v2.0.0" {
		t.Fatalf("state %+v, want agent version v2.0.0", st)
	}

	dropTar(t, h.drop, "b3.tar", withAgent(3, b2.Root.Digest, "v1.8.0"))
	waitFor(t, 15*time.Second, "bundle 3 (agent v1.8.0 after v2.0.0) rejected", func() bool { return rejected(2) })
	if st := h.state(); st.Sequence != 2 || st.Root != b2.Root.Digest {
		t.Fatalf("after the refusal the state is %+v, want bundle 2", st)
	}
	if rejs := h.rejections(); len(rejs) != 2 || !strings.Contains(rejs[1].Message, "v1.8.0 < v2.0.0, the highest agent version the cache accepted") {
		t.Fatalf("rejections %+v, want the second naming v1.8.0 < v2.0.0", rejs)
	}

	dropTar(t, h.drop, "b4.tar", withAgent(4, b2.Root.Digest, ""))
	waitFor(t, 15*time.Second, "bundle 4 (no agent image) accepted", func() bool { return h.state().Sequence == 4 })
	if st := h.state(); st.AgentVersion != "v2.0.0" {
		t.Fatalf("state %+v, want agent version v2.0.0 kept", st)
	}
}
