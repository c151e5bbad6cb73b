package agent

import (
	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/cache"
	"github.com/ferry-gitops/ferry/medium"
)

// state is where a candidate stands with the leader. From listed, a poll takes it to waiting
// (not complete), settling (no sign of being complete, first seen) or, once its root is read,
// ready; an import takes ready to imported, rejected or failed; failed goes back through ready
// after a backoff; rejected is final unless it was refused for the chain (chain, base) and the
// chain moved since. A candidate whose bytes change has a new identity: a new entry. One gone
// from a source that was listed is forgotten, whatever its state.
type state int

const (
	// listed: seen, nothing known yet.
	listed state = iota
	// waiting: not complete yet (parts missing, no index.json); neither an error nor a rejection.
	waiting
	// settling: no sign of being complete (a tar, a layout directory) and new or changed since
	// the last poll: taken once it stayed the same over two polls.
	settling
	// ready: its root is read; to import in sequence order.
	ready
	// failed: reading its root or importing it failed for a reason not the bundle's (the
	// medium, the disk); retried after a backoff. Until it is stuck (past maxRetries), nothing
	// later from its own source is imported before it; other sources never wait for it.
	failed
	// imported: accepted, or a bundle the cache accepted before.
	imported
	// rejected: refused; not tried again until it changes, or, refused for where it stands in
	// the chain, until the chain moved.
	rejected
)

var stateNames = [...]string{listed: "listed", waiting: "waiting", settling: "settling", ready: "ready", failed: "failed", imported: "imported", rejected: "rejected"}

func (s state) String() string { return stateNames[s] }

// entry is one candidate of the table.
type entry struct {
	state state
	// source is the source's index in the configuration; -1 for a candidate known only from a
	// rejection the cache recorded (kept until it is listed, then forgotten once gone).
	source int
	// polled is set once the candidate was listed by an earlier poll (settling ends then).
	polled bool
	// root is what its root says, once read.
	root *medium.RootInfo
	// awaited is what it was last logged as waiting for.
	awaited string
	// check and chain are a rejection's check and the cache's state when it was refused.
	check string
	chain cache.State
}

// candidates is the leader's table of candidates by identity. Every change of state is one of
// its methods or an entry's below.
type candidates map[string]*entry

// get returns the entry of id, a new listed one if there is none.
func (t candidates) get(id string) *entry {
	e := t[id]
	if e == nil {
		e = &entry{state: listed, source: -1}
		t[id] = e
	}
	return e
}

// recorded enters a rejection the cache recorded in an earlier term: a candidate refused
// before is not tried (and reported) again until it changes.
func (t candidates) recorded(r cache.Rejection) {
	e := t.get(r.Identity)
	e.reject(r.Check, r.State)
}

// listed enters a candidate a source offers in this poll.
func (t candidates) listed(c candidate) *entry {
	e := t.get(c.ID)
	e.source = c.source
	return e
}

// gone forgets the candidates of the sources listed in this poll that it did not offer, and
// returns their identities.
func (t candidates) gone(listedSources map[int]bool, seen map[string]bool) []string {
	var ids []string
	for id, e := range t {
		if e.source >= 0 && listedSources[e.source] && !seen[id] {
			delete(t, id)
			ids = append(ids, id)
		}
	}
	return ids
}

// polled marks the candidates seen in this poll: at the next, they have settled.
func (t candidates) polled(seen map[string]bool) {
	for id := range seen {
		if e := t[id]; e != nil {
			e.polled = true
		}
	}
}

// wait notes what the candidate waits for; it reports whether that is news (to log).
func (e *entry) wait(what string) bool {
	news := e.awaited != what
	e.state, e.awaited = waiting, what
	return news
}

// settled reports whether a candidate with no sign of being complete was listed unchanged
// before; if not, it is settling.
func (e *entry) settled() bool {
	if !e.polled && e.state != rejected && e.state != imported {
		e.state = settling
	}
	return e.polled
}

// finished reports whether there is nothing more to do with the candidate: it was imported,
// or rejected and not worth another try in the chain's state st.
func (e *entry) finished(st cache.State) bool {
	switch e.state {
	case imported:
		return true
	case rejected:
		return !e.retry(st)
	}
	return false
}

// retry reports whether a rejected candidate is worth another try although it did not change:
// it was refused for where it stands in the chain (chain, base), and the chain has moved since.
// A candidate recorded stuck (by an earlier term) is always tried again: that was the medium's
// fault, not the bundle's.
func (e *entry) retry(st cache.State) bool {
	if e.check == CheckStuck {
		return true
	}
	return (e.check == string(bundle.CheckChain) || e.check == string(bundle.CheckBase)) && st != e.chain
}

// ready keeps what the candidate's root says: it is to be imported.
func (e *entry) ready(ri *medium.RootInfo) {
	e.root = ri
	if e.state != rejected { // a rejection retried stays one until the import says otherwise
		e.state = ready
	}
}

// fail notes a transient failure (the backoff says when to retry).
func (e *entry) fail() { e.state = failed }

// imported notes the candidate accepted, or found to be a bundle the cache accepted.
func (e *entry) imported() { e.state = imported }

// reject notes the candidate refused by check when the cache's state was chain.
func (e *entry) reject(check string, chain cache.State) {
	e.state, e.check, e.chain = rejected, check, chain
}
