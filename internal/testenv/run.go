package testenv

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Result is what a command printed, and how it ended.
type Result struct {
	Stdout, Stderr string
	Err            error
}

// Run runs the tool built by `make tools` named name (or, when name is a path, that binary)
// in dir, as a fresh user: HOME and DOCKER_CONFIG point into dir, so no credential or config
// of the machine leaks in. env adds variables. It gives up after five minutes.
func Run(t testing.TB, dir string, env []string, name string, args ...string) Result {
	t.Helper()
	path := name
	if !strings.ContainsRune(name, os.PathSeparator) {
		var err error
		if path, err = ToolPath(name); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), append([]string{"HOME=" + dir, "DOCKER_CONFIG=" + filepath.Join(dir, ".docker")}, env...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return Result{out.String(), errb.String(), err}
}

// Must is Run that fails the test when the command fails, and returns its standard output.
func Must(t testing.TB, dir string, env []string, name string, args ...string) string {
	t.Helper()
	r := Run(t, dir, env, name, args...)
	if r.Err != nil {
		t.Fatalf("%s %s: %v\n%s%s", filepath.Base(name), strings.Join(args, " "), r.Err, r.Stdout, r.Stderr)
	}
	return r.Stdout
}
