package testbundle

import (
	"context"
	"testing"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/cache"
	"github.com/ferry-gitops/ferry/verify"
)

// Imported imports the fixture's layout into a new cache (closed when the test ends) through
// cache.Import under policy, and returns the cache's folder and a snapshot of it.
func (f *Fixture) Imported(t testing.TB, policy verify.Policy) (string, *cache.Snapshot) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	c, err := cache.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	read := func(opts ...bundle.ReadOption) (*bundle.Result, error) { return bundle.ReadLayout(ctx, f.Dir, opts...) }
	if _, err := c.Import(ctx, read, policy); err != nil {
		t.Fatal(err)
	}
	snap, err := c.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	return dir, snap
}
