package medium_test

import (
	"testing"

	"github.com/ferry-gitops/ferry/internal/testenv"
)

// run runs a stock CLI built by `make tools`, with an empty Docker config, and returns its
// standard output.
func run(t *testing.T, tool string, args ...string) string {
	t.Helper()
	return testenv.Must(t, t.TempDir(), nil, tool, args...)
}
