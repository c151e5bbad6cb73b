package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/ferry-gitops/ferry/cache"
	"github.com/ferry-gitops/ferry/internal/testenv"
)

// bin holds the Ferry binaries built for this run.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ferry-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// The crash tests need the cache's fault hook, which only a ferry_faults build carries.
	cmd := exec.Command("go", "build", "-tags", cache.FaultsTag, "-o", dir+string(os.PathSeparator), "../cmd/mirror", "../cmd/sync")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build ferry binaries:", err)
		os.Exit(1)
	}
	bin = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// result is what a command did.
type result = testenv.Result

// run runs a Ferry binary ("mirror", "sync") or a tool built by `make tools` with a fresh
// HOME, in dir, and returns what it printed.
func run(t *testing.T, dir string, env []string, name string, args ...string) result {
	t.Helper()
	if name == "mirror" || name == "sync" {
		name = filepath.Join(bin, name)
	}
	return testenv.Run(t, dir, env, name, args...)
}

// must is run that fails the test when the command fails, and returns its standard output.
func must(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	if name == "mirror" || name == "sync" {
		name = filepath.Join(bin, name)
	}
	return testenv.Must(t, dir, env, name, args...)
}
