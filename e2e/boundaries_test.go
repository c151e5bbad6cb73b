package e2e

import (
	"os/exec"
	"strings"
	"testing"
)

// The disconnected half of Ferry cannot reach upstreams because it does not contain the code
// that would: nothing sync builds depends on the fetch package, nor on pack (which calls fetch);
// see docs/development.md, the package map.
func TestSyncSideDoesNotImportFetch(t *testing.T) {
	for _, pkg := range []string{"../cmd/sync", "../cache", "../serve/...", "../reconcile", "../verify"} {
		out, err := exec.Command("go", "list", "-deps", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			if dep == "github.com/ferry-gitops/ferry/fetch" || dep == "github.com/ferry-gitops/ferry/pack" {
				t.Fatalf("%s depends on %s: the sync side must not contain the code that reaches upstreams", pkg, dep)
			}
		}
	}
}
