package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ferry-gitops/ferry/cache"
)

// Condition types and reasons of the status ConfigMap's conditions.
const (
	// ConditionExpired is True while the current bundle's expiry time has passed.
	ConditionExpired = "Expired"
	// ConditionStalled is True while reconciling is stopped (onExpiry: stop-reconcile and the
	// current bundle expired).
	ConditionStalled = "Stalled"

	ReasonBundleExpired    = "BundleExpired"
	ReasonBundleFresh      = "BundleFresh"
	ReasonNoBundle         = "NoBundle"
	ReasonReconcileStopped = "ReconcileStopped"
	ReasonReconciling      = "Reconciling"
)

// now is the agent's clock: the one bundles are verified against.
func (a *Agent) now() time.Time {
	if a.o.Now != nil {
		return a.o.Now()
	}
	return time.Now()
}

// expiry says whether rec (the current bundle; nil: none) has expired at now, and in words.
func (a *Agent) expiry(rec *cache.Record, now time.Time) (bool, string) {
	if rec == nil || now.Before(rec.Expires) {
		return false, ""
	}
	what := "still served and reconciled (onExpiry: keep)"
	if a.cfg.OnExpiry == OnExpiryStopReconcile {
		what = "still served, no longer reconciled (onExpiry: stop-reconcile)"
	}
	return true, fmt.Sprintf("current bundle %d (%s) expired at %s (now %s): %s; import a fresh bundle",
		rec.Sequence, rec.Root, rec.Expires.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), what)
}

// observeExpiry keeps the expiry metrics and /readyz's detail from the current bundle, on every
// replica.
func (a *Agent) observeExpiry(c *cache.Cache) {
	rec, err := c.Current()
	if err != nil {
		return
	}
	expired, why := a.expiry(rec, a.now())
	if rec != nil {
		a.metrics.expires.Set(float64(rec.Expires.Unix()))
	}
	if expired {
		a.metrics.expired.Set(1)
	} else {
		a.metrics.expired.Set(0)
	}
	a.ready.update(func(r *readiness) { r.expired = why })
}

// reconcileStopped reports whether the leader must not reconcile: the current bundle expired
// and onExpiry is stop-reconcile.
func (l *leaderRun) reconcileStopped() bool {
	if l.a.cfg.OnExpiry != OnExpiryStopReconcile {
		return false
	}
	rec, err := l.c.Current()
	if err != nil || rec == nil {
		return false
	}
	expired, _ := l.a.expiry(rec, l.a.now())
	return expired
}

// watchExpiry reports, on the leader, when the current bundle expires: a log line, the status
// ConfigMap's conditions (publish) and a Warning Event, once per bundle.
func (l *leaderRun) watchExpiry(ctx context.Context) {
	var reported digest.Digest
	for {
		if rec, err := l.c.Current(); err == nil && rec != nil {
			expired, why := l.a.expiry(rec, l.a.now())
			switch {
			case expired && reported != rec.Root:
				reported = rec.Root
				l.log.Warn("the current bundle expired", "bundle", rec.Sequence, "root", rec.Root, "expires", rec.Expires, "onExpiry", l.a.cfg.OnExpiry)
				if err := l.rep.publish(ctx, l.c); err != nil && ctx.Err() == nil {
					l.log.Warn("cannot publish the status", "err", err)
				}
				l.rep.event("Warning", ReasonBundleExpired, why)
			case !expired && reported != "":
				reported = ""
				if err := l.rep.publish(ctx, l.c); err != nil && ctx.Err() == nil {
					l.log.Warn("cannot publish the status", "err", err)
				}
			}
		}
		if !sleep(ctx, l.a.cfg.Intervals.Poll.Duration) {
			return
		}
	}
}

// conditions are the status's Expired and Stalled conditions for the current bundle rec.
func (a *Agent) conditions(rec *cache.Record) []metav1.Condition {
	now := a.now()
	t := metav1.NewTime(now.UTC().Truncate(time.Second))
	expired, why := a.expiry(rec, now)
	exp := metav1.Condition{Type: ConditionExpired, Status: metav1.ConditionFalse, Reason: ReasonBundleFresh, LastTransitionTime: t}
	stalled := metav1.Condition{Type: ConditionStalled, Status: metav1.ConditionFalse, Reason: ReasonReconciling, LastTransitionTime: t}
	switch {
	case rec == nil:
		exp.Reason, exp.Message = ReasonNoBundle, "no bundle accepted yet"
	case expired:
		exp.Status, exp.Reason, exp.Message = metav1.ConditionTrue, ReasonBundleExpired, why
		if a.cfg.OnExpiry == OnExpiryStopReconcile {
			stalled.Status, stalled.Reason, stalled.Message = metav1.ConditionTrue, ReasonReconcileStopped, why
		}
	default:
		exp.Message = fmt.Sprintf("current bundle %d expires at %s", rec.Sequence, rec.Expires.UTC().Format(time.RFC3339))
	}
	return []metav1.Condition{exp, stalled}
}
