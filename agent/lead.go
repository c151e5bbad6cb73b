package agent

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/cache"
	"github.com/ferry-gitops/ferry/medium"
	"github.com/ferry-gitops/ferry/reconcile"
	"github.com/ferry-gitops/ferry/serve"
)

// leaderRun is one term of leadership: the writer's lock on the cache, the sources' candidates
// as last seen, and what became of each.
type leaderRun struct {
	a   *Agent
	c   *cache.Cache
	srv *serve.Server
	rep *reporter
	log *slog.Logger

	// reconcileMu is held by a reconciliation: garbage collection waits for it, since the
	// reconciliation may be reading a bundle the collection would drop. Collection runs in the
	// poll loop (never beside an import, which relies on the blobs it found held); gcPending
	// says one is due.
	// rec is the reconciler, once made: a reconciliation that outlived its pass (a release
	// waiting for its Pods) holds back collection too, until rec.Idle.
	reconcileMu sync.Mutex
	rec         atomic.Pointer[reconcile.Reconciler]
	gcPending   bool
	kick        chan struct{}

	backoff *backoff
	// cands is every candidate of this term, by identity, and what became of it.
	cands candidates
	// accepted holds the roots this term accepted (a bundle, not a candidate: the same root may
	// come from several candidates).
	accepted map[digest.Digest]bool
}

// lead does the leader's work until ctx is done: poll, import, reconcile, report.
func (a *Agent) lead(ctx context.Context, srv *serve.Server) {
	if ctx.Err() != nil {
		return
	}
	c, err := a.openWriter(ctx)
	if err != nil {
		return
	}
	defer c.Close()
	// Leading from here: while another process holds the writer's lock (the old pod of a
	// rolling update), this replica only serves, and is ready as soon as it serves.
	a.metrics.leader.Set(1)
	defer a.metrics.leader.Set(0)
	a.ready.update(func(r *readiness) { r.leading, r.reconciled, r.waiting = true, false, "" })
	defer a.ready.update(func(r *readiness) { r.leading = false })
	a.log.Info("leading: importing and reconciling", "identity", a.identity)
	rep := newReporter(a.cs, a.namespace, a.identity, a.log)
	rep.agent = a // conditions (expiry) and trusted keys
	rep.start(ctx.Done())
	defer rep.shutdown()
	if err := rep.publish(ctx, c); err != nil && ctx.Err() == nil {
		a.log.Warn("cannot publish the status", "err", err)
	}
	l := &leaderRun{a: a, c: c, srv: srv, rep: rep, log: a.log, kick: make(chan struct{}, 1),
		backoff: newBackoff(a.cfg.Intervals.RetryMin.Duration, a.cfg.Intervals.RetryMax.Duration),
		cands:   candidates{}, accepted: map[digest.Digest]bool{}}
	// Rejections are remembered across restarts: a candidate refused before is not tried (and
	// reported) again until it changes.
	if rejs, err := c.Rejections(); err != nil {
		a.log.Warn("cannot read the recorded rejections", "err", err)
	} else {
		for _, r := range rejs {
			l.cands.recorded(r)
		}
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		l.reconcileLoop(ctx)
	}()
	l.keysAtStart(ctx) // key statements of the current bundle, in case the last term stopped before keeping them
	wg.Add(1)
	go func() {
		defer wg.Done()
		l.watchExpiry(ctx)
	}()
	l.kickReconcile() // reconcile from what the cache holds, at once
	tick := time.NewTicker(a.cfg.Intervals.Poll.Duration)
	defer tick.Stop()
	for {
		l.poll(ctx)
		select {
		case <-ctx.Done():
			wg.Wait()
			a.log.Info("stopped leading", "identity", a.identity)
			return
		case <-tick.C:
		}
	}
}

func (l *leaderRun) kickReconcile() {
	select {
	case l.kick <- struct{}{}:
	default: // one is pending already
	}
}

// reconcileLoop reconciles the cluster after each accepted import and every
// intervals.reconcile. It reconciles only from a bundle that imported whole: the reconciler
// reads the cache's current bundle, which cache.Import changes only by its atomic commit, after
// the whole bundle verified; an import that failed, was rejected or was killed part-way leaves
// the previous bundle current, and that is what is reconciled. With no bundle yet, it waits
// (and /readyz says so).
func (l *leaderRun) reconcileLoop(ctx context.Context) {
	a := l.a
	var r *reconcile.Reconciler
	defer func() {
		if r != nil {
			r.Close()
		}
	}()
	crds := !a.cfg.InstallCRDs
	tick := time.NewTicker(a.cfg.Intervals.Reconcile.Duration)
	defer tick.Stop()
	notReady := func(why string) { a.ready.update(func(r *readiness) { r.waiting = why }) }
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-l.kick:
		}
		st, err := l.c.State()
		if err != nil {
			notReady("cannot read the cache's state: " + err.Error())
			continue
		}
		if st.Sequence == 0 {
			notReady("no bundle accepted yet: waiting for one from " + strings.Join(a.sourceNames(), ", "))
			continue
		}
		if l.reconcileStopped() { // expired, and onExpiry: stop-reconcile (watchExpiry reports it)
			notReady("the current bundle expired and onExpiry is stop-reconcile: not reconciling until a fresh bundle is accepted")
			continue
		}
		if !crds {
			if err := reconcile.InstallCRDs(ctx, a.restCfg); err != nil {
				if ctx.Err() == nil {
					a.log.Error("cannot install the Flux CRDs; retrying at the next interval", "err", err)
					notReady("cannot install the Flux CRDs: " + err.Error())
				}
				continue
			}
			crds = true
		}
		if r == nil {
			if r, err = reconcile.New(a.restCfg, a.cfg.Cache, reconcile.Options{Logger: a.log, OnResult: a.metrics.onResult, Namespace: a.namespace, Cache: l.c, Concurrent: a.cfg.Concurrent, Tenancy: a.cfg.Tenancy.Reconcile()}); err != nil {
				a.log.Error("cannot make the reconciler; retrying at the next interval", "err", err)
				notReady("cannot make the reconciler: " + err.Error())
				r = nil
				continue
			}
			l.rec.Store(r)
		}
		start := time.Now()
		l.reconcileMu.Lock()
		err = r.ReconcileAll(ctx)
		l.reconcileMu.Unlock()
		if ctx.Err() != nil {
			return
		}
		a.ready.update(func(r *readiness) { r.reconciled = true })
		if err != nil {
			a.log.Warn("reconciled, with failures", "bundle", st.Sequence, "duration", time.Since(start).String(), "err", err)
		} else {
			a.log.Info("reconciled", "bundle", st.Sequence, "duration", time.Since(start).String())
		}
	}
}

// isAccepted reports whether root is a bundle the cache ever accepted (one it keeps, or one
// garbage collection dropped since), or that this term accepted.
func (l *leaderRun) isAccepted(root digest.Digest) bool {
	if root == "" {
		return false
	}
	if l.accepted[root] {
		return true
	}
	roots, err := l.c.AcceptedRoots()
	if err != nil {
		return false
	}
	_, ok := roots[root]
	return ok
}

// pending is a candidate to import, with what its root says.
type pending struct {
	c       candidate
	root    *medium.RootInfo
	blocked bool // failed for a transient reason, and not due for a retry yet
}

// collect collects garbage if a collection is due and no reconciliation is running (else it
// stays due: imports do not wait for a reconciliation to end).
func (l *leaderRun) collect(ctx context.Context) {
	if !l.gcPending || !l.reconcileMu.TryLock() {
		return
	}
	defer l.reconcileMu.Unlock()
	if rec := l.rec.Load(); rec != nil && !rec.Idle() {
		return
	}
	gc, err := l.c.GC(ctx, l.a.cfg.Retention.Keep)
	switch {
	case ctx.Err() != nil:
	case err != nil:
		l.log.Error("garbage collection; retrying at the next poll", "err", err)
	default:
		l.gcPending = false
		l.log.Info("garbage collected", "keep", l.a.cfg.Retention.Keep, "kept", gc.Kept, "dropped", gc.Dropped, "removedBlobs", gc.Removed, "removedBytes", gc.RemovedBytes)
	}
}

// poll lists every source, reads the root of each new candidate, and imports them in
// ascending sequence order.
func (l *leaderRun) poll(ctx context.Context) {
	a := l.a
	l.collect(ctx)
	lim := a.policy.Limits
	listed := map[int]bool{}
	var cands []candidate
	for idx, s := range a.sources { // in configuration order: candidate.source indexes it
		key := "source " + s.String()
		if !l.backoff.ready(key) {
			continue
		}
		cs, err := medium.List(ctx, s.loc, append(s.opts, medium.WithLimits(lim))...)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			d := l.backoff.fail(key)
			a.metrics.sourceErrors.WithLabelValues(s.String()).Inc()
			l.log.Warn("cannot list the source; retrying", "source", s.String(), "err", err, "retryIn", d.String())
			continue
		}
		l.backoff.ok(key)
		listed[idx] = true
		for _, c := range cs {
			cands = append(cands, candidate{Candidate: c, source: idx})
		}
	}
	st, err := l.c.State()
	if err != nil {
		l.log.Error("cannot read the cache's state", "err", err)
		return
	}
	seen := map[string]bool{}
	var todo []pending
	for _, cand := range cands {
		seen[cand.ID] = true
		src := a.sources[cand.source]
		log := l.log.With("source", src.String(), "candidate", cand.Name)
		e := l.cands.listed(cand)
		if cand.Waiting != "" {
			if e.wait(cand.Waiting) {
				log.Info("bundle not complete yet: waiting", "waiting", cand.Waiting)
			}
			continue
		}
		if e.finished(st) {
			continue // imported, or rejected (in this term or an earlier one) and unchanged since
		}
		if cand.Settle && !e.settled() {
			continue // new or changed since the last poll: maybe still being written
		}
		if e.root == nil {
			if !l.backoff.ready(cand.ID) {
				continue
			}
			ri, err := medium.ReadRoot(ctx, cand.Location, append(src.opts, medium.WithLimits(lim), medium.WithStallTimeout(l.a.cfg.Intervals.Stall.Duration))...)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				e.fail()
				d := l.failed(ctx, src, cand, nil, err)
				log.Warn("cannot read the bundle's root; retrying", "err", err, "retryIn", d.String())
				continue
			}
			e.ready(ri)
		}
		todo = append(todo, pending{c: cand, root: e.root, blocked: !l.backoff.ready(cand.ID)})
	}
	// Forget candidates gone from the sources that were listed (those of a source that could
	// not be listed are kept as they were).
	for _, id := range l.cands.gone(listed, seen) {
		l.backoff.ok(id)
	}
	l.cands.polled(seen)
	// Ascending sequence; a bundle whose root could not be read first (it is rejected at once);
	// for the same sequence, one due for a retry after one that is not.
	sort.SliceStable(todo, func(i, j int) bool {
		x, y := todo[i], todo[j]
		if x.root.Sequence != y.root.Sequence {
			return x.root.Sequence < y.root.Sequence
		}
		if x.blocked != y.blocked {
			return !x.blocked
		}
		if x.c.source != y.c.source {
			return x.c.source < y.c.source
		}
		return x.c.Name < y.c.Name
	})
	// A candidate that failed for a transient reason holds back the later candidates of its
	// own source only (the next of a chain waits for it), and only until it is stuck: past
	// maxRetries it is reported and nothing waits for it any more. Candidates of other sources
	// never wait for it: a source that fails forever cannot freeze the agent.
	held := map[int]bool{}
	for _, p := range todo {
		if ctx.Err() != nil {
			return
		}
		// A bundle the cache accepted (from this candidate or another) is done.
		if l.isAccepted(p.root.Root) {
			l.cands.get(p.c.ID).imported()
			continue
		}
		st, err := l.c.State()
		if err != nil {
			l.log.Error("cannot read the cache's state", "err", err)
			return
		}
		// At or below the current sequence, a candidate can only be a rollback or a replay:
		// it is reported as one from what its root claims, and none of its other bytes is read.
		if !p.root.Unreadable && st.Sequence > 0 && p.root.Sequence <= st.Sequence {
			l.skipOld(ctx, p, st)
			continue
		}
		if held[p.c.source] {
			continue
		}
		if p.blocked {
			// Not due for a retry yet: the later candidates of its source wait for it, unless
			// it is stuck.
			if !l.stuck(p.c.ID) {
				held[p.c.source] = true
			}
			continue
		}
		if stop := l.importOne(ctx, p); stop {
			return
		}
		if l.cands.get(p.c.ID).state == failed && !l.stuck(p.c.ID) {
			held[p.c.source] = true
		}
	}
}

// maxRetries is how many times a candidate that fails for a transient reason (its root or its
// import) is retried, with backoff, before it is stuck: reported (log, metric, Event, 'sync
// status'), still retried at the backoff's pace, but no longer holding back the later
// candidates of its source.
const maxRetries = 4

// CheckStuck is the check of the record 'sync status' lists for a candidate stuck past its
// retries: the medium kept failing (the record's message has its error). It is no verdict on
// the bundle, which is tried again.
const CheckStuck = "stuck"

// ReasonCandidateStuck is the reason of the Event of a candidate stuck past its retries.
const ReasonCandidateStuck = "CandidateStuck"

// stuck reports whether the candidate id failed past its retries.
func (l *leaderRun) stuck(id string) bool { return l.backoff.failures(id) > maxRetries }

// failed notes a transient failure of the candidate (reading its root, or importing it; root is
// nil before its root is read) and returns when it is retried. The failure past maxRetries
// reports the candidate stuck, with the last error (the medium's, for a medium that failed).
func (l *leaderRun) failed(ctx context.Context, src *source, c candidate, root *medium.RootInfo, err error) time.Duration {
	a := l.a
	a.metrics.sourceErrors.WithLabelValues(src.String()).Inc()
	d := l.backoff.fail(c.ID)
	if l.backoff.failures(c.ID) != maxRetries+1 {
		return d
	}
	st, serr := l.c.State()
	if serr != nil {
		l.log.Error("cannot read the cache's state", "err", serr)
	}
	rej := cache.Rejection{Time: time.Now(), Source: src.String(), Candidate: c.Name, Identity: c.ID, Check: CheckStuck, State: st,
		Message: fmt.Sprintf("failed %d times in a row, last with: %v", maxRetries+1, err),
		Fix:     fmt.Sprintf("check the source %s; it is retried every %s at most, and the later bundles of the source no longer wait for it", src, l.backoff.max)}
	if root != nil {
		rej.Sequence, rej.Root = root.Sequence, root.Root
	}
	l.log.Error("candidate stuck: the medium keeps failing; retrying, and importing the later bundles without it",
		"source", src.String(), "candidate", c.Name, "sequence", rej.Sequence, "failures", maxRetries+1, "err", err, "retryIn", d.String())
	if err := l.c.RecordRejection(rej); err != nil {
		l.log.Error("cannot record the stuck candidate in the cache", "err", err)
	}
	a.metrics.stuck.WithLabelValues(src.String()).Inc()
	if err := l.rep.publish(ctx, l.c); err != nil && ctx.Err() == nil {
		l.log.Warn("cannot publish the status", "err", err)
	}
	l.rep.event("Warning", ReasonCandidateStuck, fmt.Sprintf("stuck: %s %s failed %d times in a row: %v; retrying, the later bundles no longer wait for it, see 'sync status'", src, c.Name, maxRetries+1, err))
	return d
}

// skipOld reports a candidate whose root claims a sequence at or below the current one (and
// is no bundle the cache accepted) as a rollback or a replay, without reading the rest of it:
// a genuine bundle there could not be accepted, and a hostile one is not read further.
func (l *leaderRun) skipOld(ctx context.Context, p pending, st cache.State) {
	src := l.a.sources[p.c.source]
	log := l.log.With("source", src.String(), "candidate", p.c.Name, "sequence", p.root.Sequence)
	check, detail := bundle.CheckRollback, fmt.Sprintf("sequence %d < last accepted %d", p.root.Sequence, st.Sequence)
	if p.root.Sequence == st.Sequence {
		check, detail = bundle.CheckReplay, fmt.Sprintf("sequence %d was already accepted as %s", p.root.Sequence, st.Root)
	}
	err := bundle.Reject(bundle.ItemRoot, "", check, "see 'sync status'", "%s; skipped without reading the bundle beyond its root", detail)
	err.Sequence, err.Root = p.root.Sequence, p.root.Root
	l.backoff.ok(p.c.ID)
	l.reject(ctx, log, src, p, st, string(check), fmt.Errorf("bundle %d rejected: %w", p.root.Sequence, err))
}

// importOne imports a candidate as 'sync import' does (cache.Import with the pinned policy) and
// reports the outcome. It returns true when the poll must stop: the agent is stopping, or the
// cache's state cannot be read. An import that failed for a transient reason leaves the
// candidate failed.
func (l *leaderRun) importOne(ctx context.Context, p pending) bool {
	a := l.a
	src := a.sources[p.c.source]
	log := l.log.With("source", src.String(), "candidate", p.c.Name, "sequence", p.root.Sequence)
	st, err := l.c.State()
	if err != nil {
		log.Error("cannot read the cache's state", "err", err)
		return true
	}
	var read int64
	observe := bundle.WithObserver(func(e bundle.Entry) { read += e.Descriptor.Size })
	policy, err := a.importPolicy(l.c) // pinned keys with the key set applied, the floors
	if err != nil {
		log.Error("cannot make the import's policy", "err", err)
		return true
	}
	log.Info("importing bundle", "current", st.Sequence)
	start := time.Now()
	// cache.Import commits a bundle only once all of it verified; until that atomic commit the
	// cache's current bundle (what serve and reconcile read) stays the previous one.
	res, err := l.c.Import(ctx, func(opts ...bundle.ReadOption) (*bundle.Result, error) {
		return medium.Read(ctx, p.c.Location, append(src.opts, medium.WithStallTimeout(a.cfg.Intervals.Stall.Duration), medium.WithReadOptions(append(opts, observe)...))...)
	}, policy)
	took := time.Since(start)
	a.metrics.importBytes.Add(float64(read))
	switch {
	case err == nil:
		a.metrics.importSeconds.WithLabelValues("accepted").Observe(took.Seconds())
		l.backoff.ok(p.c.ID)
		l.cands.get(p.c.ID).imported()
		l.accepted[res.Record.Root] = true
		if res.AlreadyAccepted {
			return false
		}
		l.accept(ctx, log, src, p, res, took)
		return false
	case ctx.Err() != nil:
		log.Info("import abandoned: stopping; the cache is as it was")
		return true
	}
	check, isRejection := rejectionCheck(err)
	if mediaErr, failed := medium.AsError(err); failed || !isRejection {
		// The medium failed (or something around the import did): not the bundle's fault.
		a.metrics.importSeconds.WithLabelValues("failed").Observe(took.Seconds())
		l.cands.get(p.c.ID).fail()
		var verdict, cause error = err, nil
		if failed {
			verdict, cause = mediaErr.Verdict, mediaErr.Err
		}
		d := l.failed(ctx, src, p.c, p.root, err)
		log.Warn("import failed; retrying, and importing nothing later from this source before it until it is stuck", "err", verdict, "medium", errString(cause), "retryIn", d.String(), "failures", l.backoff.failures(p.c.ID))
		return false
	}
	a.metrics.importSeconds.WithLabelValues("rejected").Observe(took.Seconds())
	l.reject(ctx, log, src, p, st, check, err)
	return false
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// rejectionCheck reports whether err is a rejection (a trust check or a structural check of
// the bundle failed) and which check. An error with no *bundle.Error in its chain was not the
// bundle's (an unreadable file, a full disk): that is no rejection.
func rejectionCheck(err error) (string, bool) {
	if e, ok := bundle.AsError(err); ok {
		return string(e.Check), true
	}
	return "", false
}

// accept does what follows an accepted import: serve the new bundle, collect garbage, publish
// the status, and reconcile at once.
func (l *leaderRun) accept(ctx context.Context, log *slog.Logger, src *source, p pending, res *cache.ImportResult, took time.Duration) {
	a := l.a
	rec := res.Record
	a.metrics.accepted.Inc()
	a.metrics.sequence.Set(float64(rec.Sequence))
	log.Info("bundle accepted", "root", rec.Root, "blobs", res.Blobs, "newBlobs", res.New, "newBytes", res.NewBytes, "seconds", took.Seconds())
	// Served first, then collected: nothing served points at a blob the collection removes.
	if err := l.srv.Reload(ctx); err != nil && ctx.Err() == nil {
		log.Error("cannot serve the new bundle", "err", err)
	}
	if err := l.applyKeyStatements(ctx, log, rec); err != nil && ctx.Err() == nil {
		log.Error("cannot keep the bundle's key statements; trying again when leading starts", "err", err)
	}
	l.gcPending = true
	l.collect(ctx)
	if err := l.rep.publish(ctx, l.c); err != nil && ctx.Err() == nil {
		log.Warn("cannot publish the status", "err", err)
	}
	l.rep.event("Normal", ReasonBundleAccepted, fmt.Sprintf("bundle %d accepted from %s %s: root %s, %d blobs (%d new)", rec.Sequence, src, p.c.Name, rec.Root, res.Blobs, res.New))
	l.kickReconcile()
}

// reject reports a rejected bundle in the log, the metrics, the cache (for 'sync status'), the
// status ConfigMap and an Event, and leaves it where it was.
func (l *leaderRun) reject(ctx context.Context, log *slog.Logger, src *source, p pending, st cache.State, check string, err error) {
	a := l.a
	rej := cache.Rejection{Time: time.Now(), Source: src.String(), Candidate: p.c.Name, Identity: p.c.ID,
		Sequence: p.root.Sequence, Root: p.root.Root, Check: check, Message: err.Error(), State: st}
	if e, ok := bundle.AsError(err); ok {
		if e.Sequence != 0 {
			rej.Sequence, rej.Root = e.Sequence, e.Root
		}
		rej.Item, rej.Fix = e.Item, e.Fix
	}
	log.Warn("bundle rejected; left where it was", "check", check, "item", rej.Item, "root", rej.Root, "current", st.Sequence, "err", err)
	if err := l.c.RecordRejection(rej); err != nil {
		log.Error("cannot record the rejection in the cache", "err", err)
	}
	// Counted once recorded: whoever sees the counter move finds the record in 'sync status'.
	a.metrics.rejected.WithLabelValues(check).Inc()
	l.cands.get(p.c.ID).reject(check, st)
	if err := l.rep.publish(ctx, l.c); err != nil && ctx.Err() == nil {
		log.Warn("cannot publish the status", "err", err)
	}
	l.rep.event("Warning", ReasonBundleRejected, fmt.Sprintf("rejected (%s): %s %s: %v; left where it was, see 'sync status'", check, src, p.c.Name, err))
}
