package cache_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/internal/testbundle"
	"github.com/ferry-gitops/ferry/verify"
)

// agentBundle builds a signed bundle (sequence seq after previous) that carries item
// "ferry-sync" built for platforms, or no agent image when there are none.
func agentBundle(t testing.TB, sign testbundle.SignFunc, seq uint64, previous digest.Digest, platforms ...testbundle.Platform) *testbundle.Fixture {
	t.Helper()
	f := testbundle.New(t, seq, previous, nil)
	if len(platforms) == 0 {
		f.Write(t, sign)
		return f
	}
	f.AddImage(t, "ferry-sync", sign, platforms...)
	return f
}

func agentAt(version string) []testbundle.Platform {
	return []testbundle.Platform{{Platform: "linux/amd64", Labels: testbundle.AgentLabels(version)}}
}

// A bundle carrying an older Ferry agent image than one accepted before (or than the running
// agent) is refused with check agent-rollback, and the cache is exactly as it was: the same
// current bundle, nothing staged. Equal versions, newer ones and bundles without an agent image
// pass; an agent image whose version is missing, invalid or disagrees between platforms is refused.
func TestAgentImageRollback(t *testing.T) {
	type step struct {
		platforms []testbundle.Platform
		// refused is the substring the rejection must hold ("" = accepted).
		refused string
	}
	cases := []struct {
		name  string
		floor string // the running agent's version
		steps []step
		// recorded is the state's agent version after the last step.
		recorded string
	}{
		{name: "newer after older", steps: []step{{platforms: agentAt("v1.0.0")}, {platforms: agentAt("v2.0.0")}}, recorded: "v2.0.0"},
		{name: "older after newer", steps: []step{{platforms: agentAt("v2.0.0")}, {platforms: agentAt("v1.0.0"),
			refused: "item ferry-sync: agent image version v1.0.0 < v2.0.0, the highest agent version the cache accepted (anti-rollback of the agent) (check: agent-rollback); fix: pack a bundle with agent image >= v2.0.0"}},
			recorded: "v2.0.0"},
		{name: "same version rebuilt", steps: []step{{platforms: agentAt("v2.0.0")}, {platforms: agentAt("v2.0.0")}}, recorded: "v2.0.0"},
		{name: "prerelease below its release", steps: []step{{platforms: agentAt("v2.0.0")}, {platforms: agentAt("v2.0.0-rc.1"), refused: "v2.0.0-rc.1 < v2.0.0"}}, recorded: "v2.0.0"},
		{name: "no agent image after one", steps: []step{{platforms: agentAt("v2.0.0")}, {}}, recorded: "v2.0.0"},
		{name: "no agent image at all", steps: []step{{}, {}}, recorded: ""},
		{name: "floor of the running agent", floor: "v3.1.0", steps: []step{{platforms: agentAt("v3.0.9"),
			refused: "agent image version v3.0.9 < v3.1.0, the running agent's version (anti-rollback of the agent) (check: agent-rollback); fix: pack a bundle with agent image >= v3.1.0"}}},
		{name: "floor met", floor: "v3.1.0", steps: []step{{platforms: agentAt("v3.1.0")}, {platforms: agentAt("v3.2.0")}}, recorded: "v3.2.0"},
		{name: "recorded above the floor wins", floor: "v1.0.0", steps: []step{{platforms: agentAt("v2.0.0")}, {platforms: agentAt("v1.5.0"), refused: "v1.5.0 < v2.0.0, the highest agent version"}}, recorded: "v2.0.0"},
		{name: "dev floor is no floor", floor: "dev", steps: []step{{platforms: agentAt("v0.1.0")}}, recorded: "v0.1.0"},
		{name: "invalid version", steps: []step{{platforms: agentAt("latest"), refused: `has org.opencontainers.image.version "latest", not a semver version`}}},
		{name: "dev version", steps: []step{{platforms: agentAt("v1.0.0")}, {platforms: agentAt("dev"), refused: `"dev", not a semver version`}}, recorded: "v1.0.0"},
		{name: "title without version", steps: []step{{platforms: agentAt("v1.0.0")},
			{platforms: []testbundle.Platform{{Platform: "linux/amd64", Labels: map[string]string{verify.LabelTitle: verify.AgentTitle}}}, refused: "has no org.opencontainers.image.version label"}}, recorded: "v1.0.0"},
		{name: "multi-arch agreeing", steps: []step{{platforms: agentAt("v1.0.0")}, {platforms: []testbundle.Platform{
			{Platform: "linux/amd64", Labels: testbundle.AgentLabels("v1.1.0")}, {Platform: "linux/arm64", Labels: testbundle.AgentLabels("v1.1.0")}}}}, recorded: "v1.1.0"},
		{name: "multi-arch disagreeing", steps: []step{{platforms: agentAt("v2.0.0")}, {platforms: []testbundle.Platform{
			{Platform: "linux/amd64", Labels: testbundle.AgentLabels("v3.0.0")}, {Platform: "linux/arm64", Labels: testbundle.AgentLabels("v1.0.0")}},
			refused: "of linux/arm64 has version v1.0.0 but config"}}, recorded: "v2.0.0"},
		{name: "multi-arch with an unlabelled platform", steps: []step{{platforms: agentAt("v2.0.0")}, {platforms: []testbundle.Platform{
			{Platform: "linux/amd64", Labels: testbundle.AgentLabels("v3.0.0")}, {Platform: "linux/arm64"}},
			refused: "of linux/arm64 has no org.opencontainers.image.title label"}}, recorded: "v2.0.0"},
		{name: "another image titled otherwise", steps: []step{{platforms: agentAt("v2.0.0")}, {platforms: []testbundle.Platform{
			{Platform: "linux/amd64", Labels: map[string]string{verify.LabelTitle: "nginx", verify.LabelVersion: "v0.0.1"}}}}}, recorded: "v2.0.0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			sign, policy := keyPair(t)
			policy.AgentFloor = tc.floor
			dir := t.TempDir()
			c := open(t, dir)
			prev := digest.Digest("")
			for i, s := range tc.steps {
				f := agentBundle(t, sign, uint64(i+1), prev, s.platforms...)
				before, current := snapshot(t, dir), prev
				_, err := c.Import(ctx, fromDir(f.Dir), policy)
				if s.refused == "" {
					if err != nil {
						t.Fatalf("bundle %d: %v", i+1, err)
					}
					prev = f.Root.Digest
					continue
				}
				e, ok := bundle.AsError(err)
				if !ok || e.Check != bundle.CheckAgentRollback || e.Item != "ferry-sync" || e.Sequence != uint64(i+1) || e.Root != f.Root.Digest {
					t.Fatalf("bundle %d: want a rejection of item ferry-sync with check %s, got %v (%+v)", i+1, bundle.CheckAgentRollback, err, e)
				}
				if !strings.Contains(err.Error(), s.refused) || !strings.HasPrefix(err.Error(), "bundle ") {
					t.Errorf("bundle %d: error %q does not say %q", i+1, err, s.refused)
				}
				if after := snapshot(t, dir); after != before {
					t.Errorf("bundle %d: the refused import changed the cache:\nbefore:\n%s\nafter:\n%s", i+1, before, after)
				}
				if staged, _ := os.ReadDir(filepath.Join(dir, "staging")); len(staged) != 0 {
					t.Errorf("bundle %d: %d staging folders left", i+1, len(staged))
				}
				if cur, err := c.Current(); current != "" && (err != nil || cur.Root != current) {
					t.Errorf("bundle %d: current bundle is %v (%v), want %s", i+1, cur, err, current)
				}
				break
			}
			st, err := c.State()
			if err != nil {
				t.Fatal(err)
			}
			if st.AgentVersion != tc.recorded {
				t.Errorf("recorded agent version %q, want %q", st.AgentVersion, tc.recorded)
			}
			if raw, err := os.ReadFile(filepath.Join(dir, "state.json")); err == nil && tc.recorded == "" && strings.Contains(string(raw), "agentVersion") {
				t.Errorf("state.json names an agent version with none accepted: %s", raw)
			}
		})
	}
}

// A state file written before agentVersion existed reads as "no agent version recorded", and
// the first bundle with an agent image records its version.
func TestAgentImageOldStateFile(t *testing.T) {
	ctx := context.Background()
	sign, policy := keyPair(t)
	dir := t.TempDir()
	c := open(t, dir)
	b1 := agentBundle(t, sign, 1, "")
	if _, err := c.Import(ctx, fromDir(b1.Dir), policy); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), "agentVersion") {
		t.Fatalf("state without an agent image: %s", raw)
	}
	b2 := agentBundle(t, sign, 2, b1.Root.Digest, agentAt("v1.4.0")...)
	if _, err := c.Import(ctx, fromDir(b2.Dir), policy); err != nil {
		t.Fatal(err)
	}
	if st, err := c.State(); err != nil || st.AgentVersion != "v1.4.0" || st.Sequence != 2 {
		t.Fatalf("state %+v (%v), want sequence 2, agent v1.4.0", st, err)
	}
	if _, err := c.Import(ctx, fromDir(b2.Dir), policy); err != nil { // already accepted: nothing changes
		t.Fatal(err)
	}
	b3 := agentBundle(t, sign, 3, b2.Root.Digest, agentAt("v1.3.9")...)
	if _, err := c.Import(ctx, fromDir(b3.Dir), policy); err == nil {
		t.Fatal("v1.3.9 after v1.4.0 was accepted")
	} else if e, ok := bundle.AsError(err); !ok || e.Check != bundle.CheckAgentRollback {
		t.Fatalf("v1.3.9 after v1.4.0: %v, want check %s", err, bundle.CheckAgentRollback)
	}
}

// An image item restricted to some platforms carries its index byte for byte but only those
// platforms' manifests: the agent-version check reads the labels of what the bundle carries
// (here linux/amd64, v2.0.0) and never the platforms it leaves out (linux/arm64, whose older
// labels would otherwise disagree), which are absent.
func TestAgentImageFilteredPlatforms(t *testing.T) {
	ctx := context.Background()
	sign, policy := keyPair(t)
	f := testbundle.New(t, 1, "", nil)
	d := testbundle.Image(t, f.Layout,
		testbundle.Platform{Platform: "linux/amd64", Labels: testbundle.AgentLabels("v2.0.0")},
		testbundle.Platform{Platform: "linux/arm64", Labels: testbundle.AgentLabels("v1.0.0")})
	raw, err := os.ReadFile(f.BlobPath(d.Digest))
	if err != nil {
		t.Fatal(err)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(raw, &idx); err != nil {
		t.Fatal(err)
	}
	for _, m := range idx.Manifests {
		if bundle.PlatformString(m.Platform) == "linux/arm64" {
			if err := os.Remove(f.BlobPath(m.Digest)); err != nil {
				t.Fatal(err)
			}
		}
	}
	f.Bundle.Items = append(f.Bundle.Items, bundle.Item{Name: "ferry-sync", Kind: bundle.KindImage, Source: "registry.example/ferry/sync",
		Revision: string(d.Digest), Descriptor: d, Platforms: []string{"linux/amd64"}})
	f.Write(t, sign)
	c := open(t, t.TempDir())
	if _, err := c.Import(ctx, fromDir(f.Dir), policy); err != nil {
		t.Fatalf("import of an image item restricted to linux/amd64: %v", err)
	}
	st, err := c.State()
	if err != nil {
		t.Fatal(err)
	}
	if st.AgentVersion != "v2.0.0" {
		t.Errorf("recorded agent version %q, want v2.0.0 (the carried platform's)", st.AgentVersion)
	}
}
