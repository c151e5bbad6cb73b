package medium_test

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ferry-gitops/ferry/internal/testenv"
)

// run runs a stock CLI built by `make tools`, with an empty Docker config, and returns its
// standard output.
func run(t *testing.T, tool string, args ...string) string {
	t.Helper()
	bin, err := testenv.ToolPath(tool)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(cmd.Environ(), "HOME="+t.TempDir(), "DOCKER_CONFIG="+t.TempDir())
	out, err := cmd.Output()
	if err != nil {
		stderr := ""
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("%s %s: %v\n%s%s", tool, strings.Join(args, " "), err, out, stderr)
	}
	return string(out)
}
