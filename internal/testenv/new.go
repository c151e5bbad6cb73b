package testenv

import (
	"context"
	"testing"
)

// stopper is what every server here implements.
type stopper interface{ Stop() error }

// start runs a starter with a per-test directory, fails the test on error, and stops the
// server when the test ends.
func start[S stopper](t testing.TB, fn func(context.Context, string) (S, error)) S {
	t.Helper()
	s, err := fn(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	return s
}

// NewRegistry starts a registry for the test.
func NewRegistry(t testing.TB) *Registry { t.Helper(); return start(t, StartRegistry) }

// NewMinIO starts MinIO for the test.
func NewMinIO(t testing.TB) *MinIO { t.Helper(); return start(t, StartMinIO) }

// NewCluster starts etcd and kube-apiserver for the test.
func NewCluster(t testing.TB) *Cluster { t.Helper(); return start(t, StartCluster) }

// NewGitServer starts a Git smart-HTTP server for the test.
func NewGitServer(t testing.TB) *GitServer { t.Helper(); return start(t, StartGitServer) }

// NewHelmRepo starts a Helm HTTP repository for the test.
func NewHelmRepo(t testing.TB) *HelmRepo { t.Helper(); return start(t, StartHelmRepo) }
