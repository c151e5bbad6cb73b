package reconcile

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	helmv2 "github.com/fluxcd/helm-controller/api/v2"
	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/kube"
	release "helm.sh/helm/v4/pkg/release/v1"
)

// testsEnabled says whether h runs the chart's tests.
func testsEnabled(h *helmv2.HelmRelease) bool {
	return h.Spec.Test != nil && h.Spec.Test.Enable
}

// testHooks returns the hooks of rel that run on helm test.
func testHooks(rel *release.Release) []*release.Hook {
	var out []*release.Hook
	if rel == nil {
		return nil
	}
	for _, hk := range rel.Hooks {
		if hk != nil && slices.Contains(hk.Events, release.HookTest) {
			out = append(out, hk)
		}
	}
	return out
}

// hookNames writes hooks as "Pod app-test, ConfigMap x".
func hookNames(hooks []*release.Hook) string {
	var names []string
	for _, hk := range hooks {
		names = append(names, hk.Kind+" "+hk.Name)
	}
	return strings.Join(names, ", ")
}

// runTests runs the tests of the release relName (helm test) when h enables them, within
// spec.test.timeout (default the HelmRelease's timeout), counted from their start rather than
// within what is left of the reconciliation's timeout; ctx cancels them. tested says what ran ("" when tests
// are not enabled); failed is "" unless the tests failed and h does not ignore failures, and
// then says which failed and why.
func (r *Reconciler) runTests(ctx context.Context, cfg *action.Configuration, h *helmv2.HelmRelease, relName, relNS string, log *slog.Logger) (tested, failed string) {
	if !testsEnabled(h) {
		return "", ""
	}
	rt := action.NewReleaseTesting(cfg)
	rt.Namespace = relNS
	rt.Timeout = helmTimeout(h)
	if h.Spec.Test.Timeout != nil && h.Spec.Test.Timeout.Duration > 0 {
		rt.Timeout = h.Spec.Test.Timeout.Duration
	}
	ctx, cancel := context.WithTimeout(ctx, rt.Timeout+time.Minute) // Helm times out first; this stops a hung request
	defer cancel()
	rt.WaitOptions = []kube.WaitOption{kube.WithWaitContext(ctx), kube.WithWatchUntilReadyMethodContext(ctx)}
	reli, shutdown, err := rt.Run(relName)
	if shutdown != nil {
		if serr := shutdown(); serr != nil {
			log.Warn("delete test hooks", "error", serr)
		}
	}
	rel, _ := reli.(*release.Release)
	hooks := testHooks(rel)
	if err == nil {
		if len(hooks) == 0 {
			log.Info("tests enabled, but the chart has none")
			return "the chart has no tests", ""
		}
		log.Info("tests passed", "hooks", hookNames(hooks))
		return fmt.Sprintf("%d tests passed", len(hooks)), ""
	}
	msg := fmt.Sprintf("tests failed (%s): %v", hookNames(hooks), err)
	if h.Spec.Test.IgnoreFailures {
		log.Warn("tests failed, ignored (test.ignoreFailures)", "error", err)
		return msg + " (ignored)", ""
	}
	log.Warn("tests failed", "error", err)
	return "", msg
}

// failedTests says, when h runs tests and does not ignore failures, whether the test hooks of
// rel (the deployed revision) failed the last time they ran, and otherwise returns "".
func failedTests(h *helmv2.HelmRelease, rel *release.Release) string {
	if !testsEnabled(h) || h.Spec.Test.IgnoreFailures {
		return ""
	}
	var failed []*release.Hook
	for _, hk := range testHooks(rel) {
		if hk.LastRun.Phase == release.HookPhaseFailed {
			failed = append(failed, hk)
		}
	}
	if len(failed) == 0 {
		return ""
	}
	return fmt.Sprintf("the tests of revision %d failed (%s); a new chart version or new values try again", rel.Version, hookNames(failed))
}

// withTests appends what the tests did to a success's message.
func withTests(out outcome, tested string) outcome {
	if tested != "" {
		out.message += "; " + tested
	}
	return out
}
