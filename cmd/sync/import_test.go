package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/ferry-gitops/ferry/cache"
	"github.com/ferry-gitops/ferry/internal/testbundle"
)

// sync import accepts a bundle carrying agent image v2 after one carrying v1, and refuses one
// carrying v1 after v2 with check agent-rollback, leaving the cache's current bundle as it was.
// It passes no floor of its own: the host's binary is not the cluster's agent.
func TestImportRefusesAnOlderAgentImage(t *testing.T) {
	s := testbundle.NewSigner(t)
	keyFile := filepath.Join(t.TempDir(), "cosign.pub")
	if err := os.WriteFile(keyFile, s.PublicPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "cache")
	run := func(f *testbundle.Fixture) (string, error) {
		cmd := importCommand()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetArgs([]string{"--cache", dir, "--key", keyFile, f.Dir})
		err := cmd.Execute()
		return out.String(), err
	}
	agent := func(seq uint64, prev *testbundle.Fixture, version string) *testbundle.Fixture {
		previous := digest.Digest("")
		if prev != nil {
			previous = prev.Root.Digest
		}
		f := testbundle.New(t, seq, previous, nil)
		f.AddImage(t, "ferry-sync", s.Sign, testbundle.Platform{Platform: "linux/amd64", Labels: testbundle.AgentLabels(version)})
		return f
	}
	b1 := agent(1, nil, "v0.1.0") // below the test binary's own version, were it semver
	if out, err := run(b1); err != nil {
		t.Fatalf("bundle 1 (agent v0.1.0): %v\n%s", err, out)
	}
	b2 := agent(2, b1, "v2.0.0")
	if out, err := run(b2); err != nil {
		t.Fatalf("bundle 2 (agent v2.0.0): %v\n%s", err, out)
	}
	b3 := agent(3, b2, "v1.0.0")
	out, err := run(b3)
	if err == nil {
		t.Fatalf("bundle 3 (agent v1.0.0 after v2.0.0) was accepted:\n%s", out)
	}
	for _, want := range []string{"bundle 3 rejected: item ferry-sync", "v1.0.0 < v2.0.0", "(check: agent-rollback)", "fix: pack a bundle with agent image >= v2.0.0"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	c, err := cache.OpenReader(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cur, err := c.Current()
	if err != nil || cur == nil || cur.Root != b2.Root.Digest || cur.Sequence != 2 {
		t.Fatalf("current bundle after the refusal: %+v (%v), want bundle 2 %s", cur, err, b2.Root.Digest)
	}
	if st, err := c.State(); err != nil || st.AgentVersion != "v2.0.0" {
		t.Fatalf("state %+v (%v), want agent version v2.0.0", st, err)
	}
	if staged, _ := os.ReadDir(filepath.Join(dir, "staging")); len(staged) != 0 {
		t.Fatalf("%d staging folders left", len(staged))
	}
}
