package agent

import (
	"testing"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/cache"
	"github.com/ferry-gitops/ferry/medium"
)

// The candidate table: a settling candidate is taken at its second poll; a rejection is final
// unless it was for the chain and the chain moved; a recorded rejection is kept until its
// candidate is listed and then gone; a candidate gone from a listed source is forgotten, one
// of a source that could not be listed is kept.
func TestCandidateStates(t *testing.T) {
	table := candidates{}
	st1 := cache.State{Sequence: 1}
	c := func(id string, source int) candidate {
		return candidate{Candidate: medium.Candidate{ID: id, Settle: true}, source: source}
	}
	e := table.listed(c("tar-a", 0))
	if e.settled() || e.state != settling {
		t.Fatalf("a new tar settled at once: %s", e.state)
	}
	table.polled(map[string]bool{"tar-a": true})
	if !table.listed(c("tar-a", 0)).settled() {
		t.Fatal("a tar unchanged over two polls did not settle")
	}
	e.ready(&medium.RootInfo{Sequence: 2})
	if e.state != ready || e.finished(st1) {
		t.Fatalf("state %s after its root was read", e.state)
	}
	e.reject(string(bundle.CheckChain), st1)
	if !e.finished(st1) || e.finished(cache.State{Sequence: 2}) {
		t.Fatal("a chain rejection is retried only once the chain moved")
	}
	e.reject(string(bundle.CheckSignature), st1)
	if !e.finished(cache.State{Sequence: 2}) {
		t.Fatal("a signature rejection was retried")
	}
	e.fail()
	if e.finished(st1) || e.state != failed {
		t.Fatalf("state %s after a transient failure", e.state)
	}
	e.imported()
	if !e.finished(st1) {
		t.Fatal("an imported candidate is not finished")
	}
	table.recorded(cache.Rejection{Identity: "old", Check: string(bundle.CheckExpired), State: st1})
	table.listed(c("tar-b", 1))
	if w := table.listed(c("parts-c", 0)); !w.wait("1 of 2 parts") || w.wait("1 of 2 parts") || w.state != waiting {
		t.Fatal("a waiting candidate's news is logged once")
	}
	gone := table.gone(map[int]bool{0: true}, map[string]bool{"parts-c": true})
	if len(gone) != 1 || gone[0] != "tar-a" || table["old"] == nil || table["tar-b"] == nil || table["parts-c"] == nil {
		t.Fatalf("forgot %q; left %v", gone, table)
	}
}
