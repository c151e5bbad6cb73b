package e2e

import (
	"os/exec"
	"slices"
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

// allowedImports is the package map of docs/development.md: for each Ferry package, the Ferry
// packages its non-test code may import. A package missing here, or an import outside its
// row, fails the test: a new dependency between rooms is a decision, made in the map first.
var allowedImports = map[string][]string{
	"bundle":              {},
	"verify":              {"bundle"},
	"signing":             {"bundle", "verify"},
	"spec":                {"bundle", "internal/strictyaml"},
	"fetch":               {"bundle", "spec"},
	"medium":              {"bundle", "verify"},
	"pack":                {"bundle", "discover", "fetch", "medium", "signing", "spec"},
	"kbuild":              {"bundle"},
	"discover":            {"bundle", "fetch", "kbuild", "spec"},
	"cache":               {"bundle", "verify"},
	"serve/registry":      {"bundle", "cache"},
	"serve/gitserve":      {"bundle", "cache"},
	"serve":               {"cache", "serve/gitserve", "serve/registry", "verify"},
	"api":                 {},
	"reconcile":           {"api", "bundle", "cache", "kbuild"},
	"policies":            {"api", "bundle"},
	"agent":               {"bundle", "cache", "medium", "reconcile", "serve", "verify", "internal/authfile", "internal/cli", "internal/strictyaml"},
	"deploy":              {},
	"cmd/mirror":          {"bundle", "discover", "fetch", "internal/cli", "medium", "pack", "signing", "spec", "verify"},
	"cmd/sync":            {"agent", "api", "bundle", "cache", "deploy", "internal/authfile", "internal/buildinfo", "internal/cli", "medium", "reconcile", "serve", "serve/registry", "verify"},
	"internal/authfile":   {},
	"internal/buildinfo":  {},
	"internal/cli":        {"internal/buildinfo", "medium"},
	"internal/strictyaml": {},
	// Test support and development programs.
	"internal/testbundle": {"bundle", "cache", "pack", "signing", "spec", "verify"},
	"internal/testenv":    {},
	"e2e":                 {},
	"bench":               {"internal/cli", "internal/testenv"},
	"hack/demo":           {"internal/testenv"},
	"hack/fuzzseeds":      {"bundle"},
	"hack/image":          {"deploy", "verify"},
}

// testOnly are the packages no shipped binary may contain.
var testOnly = []string{"internal/testbundle", "internal/testenv"}

func TestPackageMap(t *testing.T) {
	const module = "github.com/ferry-gitops/ferry/"
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", "../...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg := strings.TrimPrefix(fields[0], module)
		allowed, ok := allowedImports[pkg]
		if !ok {
			t.Errorf("%s: not in the package map (e2e/boundaries_test.go and docs/development.md): add it with its one job and what it may import", pkg)
			continue
		}
		for _, imp := range fields[1:] {
			dep, ours := strings.CutPrefix(imp, module)
			if !ours {
				continue
			}
			if !slices.Contains(allowed, dep) {
				t.Errorf("%s imports %s, which the package map does not allow (allowed: %v)", pkg, dep, allowed)
			}
		}
	}
	for _, main := range []string{"../cmd/mirror", "../cmd/sync"} {
		deps, err := exec.Command("go", "list", "-deps", main).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", main, err)
		}
		for _, dep := range strings.Fields(string(deps)) {
			if p, ours := strings.CutPrefix(dep, module); ours && slices.Contains(testOnly, p) {
				t.Errorf("%s contains %s, which is for tests only", main, p)
			}
		}
	}
}
