package agent_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/ferry-gitops/ferry/agent"
	"github.com/ferry-gitops/ferry/internal/testbundle"
)

// goodConfig is the configuration file of the issue, field for field.
const goodConfig = `apiVersion: ferry.dev/v1alpha1
kind: SyncConfig
cache: /var/lib/ferry/cache
keys:                         # pinned public keys; at least one
  - path: /etc/ferry/keys/cosign.pub
    notBefore: 2026-01-01T00:00:00Z
    notAfter: 2027-01-01T00:00:00Z
threshold: 1
allowGaps: false
sources:
  - dir: /var/lib/ferry/drop
  - s3: {endpoint: minio.example:9000, bucket: bundles, prefix: site-a/, insecure: false}
  - registry: {repository: registry.example/ferry/bundles, plainHTTP: false}
limits: {maxBlobSize: 64GiB, maxTotalSize: "1TiB", maxBlobs: 5000, maxParts: 10, maxManifestSize: 1048576}
retention: {keep: 3}
intervals: {poll: 10s, reconcile: 1m, retryMin: 5s, retryMax: 5m}
serve: {listen: ":5000", tlsCert: "", tlsKey: "", gitWorkDir: ""}
health: {listen: ":8080"}
kubeconfig: ""
installCRDs: true
leaderElection: {enabled: true, namespace: ferry-system, name: ferry-sync}
`

func TestParseConfig(t *testing.T) {
	c, err := agent.ParseConfig("sync.yaml", []byte(goodConfig))
	if err != nil {
		t.Fatal(err)
	}
	k := c.Keys[0]
	if c.Cache != "/var/lib/ferry/cache" || len(c.Keys) != 1 || k.Path != "/etc/ferry/keys/cosign.pub" ||
		!k.NotBefore.Equal(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) || !k.NotAfter.Equal(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("cache and keys: %+v %+v", c.Cache, c.Keys)
	}
	if len(c.Sources) != 3 || c.Sources[0].Dir != "/var/lib/ferry/drop" || c.Sources[1].S3 == nil || c.Sources[1].S3.Bucket != "bundles" ||
		c.Sources[1].S3.Prefix != "site-a/" || c.Sources[2].Registry == nil || c.Sources[2].Registry.Repository != "registry.example/ferry/bundles" {
		t.Fatalf("sources: %+v", c.Sources)
	}
	lim := c.Limits.Bundle()
	if lim.MaxBlobSize != 64<<30 || lim.MaxTotalSize != 1<<40 || lim.MaxBlobs != 5000 || lim.MaxParts != 10 || lim.MaxManifestSize != 1<<20 || lim.MaxAttachments != 0 {
		t.Fatalf("limits: %+v", lim)
	}
	if c.Intervals.Poll.Duration != 10*time.Second || c.Intervals.Reconcile.Duration != time.Minute || c.Intervals.RetryMin.Duration != 5*time.Second || c.Intervals.RetryMax.Duration != 5*time.Minute {
		t.Fatalf("intervals: %+v", c.Intervals)
	}
	if c.Retention.Keep != 3 || c.Serve.Listen != ":5000" || c.Health.Listen != ":8080" || !c.InstallCRDs || c.Kubeconfig != "" ||
		!c.LeaderElection.Enabled || c.LeaderElection.Namespace != "ferry-system" || c.LeaderElection.Name != "ferry-sync" || c.Threshold != 1 || c.AllowGaps {
		t.Fatalf("the rest: %+v", c)
	}
}

// A minimal file gets every default.
func TestParseConfigDefaults(t *testing.T) {
	c, err := agent.ParseConfig("min.yaml", []byte("apiVersion: ferry.dev/v1alpha1\nkind: SyncConfig\nkeys: [{path: k.pub}]\nsources: [{dir: /drop}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := agent.DefaultConfig()
	if c.Cache != want.Cache || c.Cache != agent.DefaultCache || c.Threshold != 1 || c.Retention.Keep != agent.DefaultKeep ||
		c.Intervals.Poll.Duration != agent.DefaultPoll || c.Intervals.Reconcile.Duration != agent.DefaultReconcile ||
		c.Intervals.RetryMin.Duration != agent.DefaultRetryMin || c.Intervals.RetryMax.Duration != agent.DefaultRetryMax ||
		c.Serve.Listen != ":5000" || c.Health.Listen != ":8080" || c.LeaderElection.Enabled || c.LeaderElection.Namespace != "ferry-system" || c.LeaderElection.Name != "ferry-sync" ||
		c.OnExpiry != agent.OnExpiryKeep || c.MinSequence != 0 {
		t.Fatalf("defaults: %+v", c)
	}
}

// Every bad field is an error naming it.
func TestParseConfigErrors(t *testing.T) {
	replace := func(old, new string) string {
		if !strings.Contains(goodConfig, old) {
			t.Fatalf("the good config has no %q", old)
		}
		return strings.Replace(goodConfig, old, new, 1)
	}
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"not YAML", "\t: :", []string{"not valid YAML"}},
		{"not a mapping", "- a\n- b\n", []string{"want a mapping"}},
		{"unknown top-level field", goodConfig + "pollInterval: 10s\n", []string{"pollInterval: unknown field; known fields here: apiVersion, kind, cache"}},
		{"unknown nested field", replace("retention: {keep: 3}", "retention: {keep: 3, maxAge: 1h}"), []string{"retention.maxAge: unknown field; known fields here: keep"}},
		{"unknown field in a source", replace("bucket: bundles,", "bucket: bundles, region: eu,"), []string{"sources[1].s3.region: unknown field"}},
		{"unknown field in a key", replace("  - path: /etc/ferry/keys/cosign.pub\n", "  - path: /etc/ferry/keys/cosign.pub\n    name: ops\n"), []string{"keys[0].name: unknown field"}},
		{"wrong apiVersion", replace("apiVersion: ferry.dev/v1alpha1", "apiVersion: ferry.dev/v1"), []string{`apiVersion: "ferry.dev/v1", want ferry.dev/v1alpha1`}},
		{"wrong kind", replace("kind: SyncConfig", "kind: Mirror"), []string{`kind: "Mirror", want SyncConfig`}},
		{"no keys", replace("keys:                         # pinned public keys; at least one\n  - path: /etc/ferry/keys/cosign.pub\n    notBefore: 2026-01-01T00:00:00Z\n    notAfter: 2027-01-01T00:00:00Z\n", "keys: []\n"), []string{"keys: pin at least one"}},
		{"key without path", replace("  - path: /etc/ferry/keys/cosign.pub\n", "  - path: \"\"\n"), []string{"keys[0].path: required"}},
		{"key window backwards", replace("notAfter: 2027-01-01T00:00:00Z", "notAfter: 2025-01-01T00:00:00Z"), []string{"keys[0].notAfter: 2025-01-01T00:00:00Z is not after notBefore"}},
		{"key time not a time", replace("notBefore: 2026-01-01T00:00:00Z", "notBefore: next tuesday"), []string{"keys[0].notBefore: next tuesday: want a time"}},
		{"threshold above the keys", replace("threshold: 1", "threshold: 2"), []string{"threshold: 2, want between 1 and the number of keys (1)"}},
		{"threshold negative", replace("threshold: 1", "threshold: -1"), []string{"threshold: -1"}},
		{"threshold not a number", replace("threshold: 1", "threshold: one"), []string{"threshold: want int, got string"}},
		{"allowGaps not a bool", replace("allowGaps: false", "allowGaps: sometimes"), []string{"allowGaps: want bool, got string"}},
		{"onExpiry unknown", replace("allowGaps: false", "allowGaps: false\nonExpiry: panic"), []string{`onExpiry: "panic", want keep or stop-reconcile`}},
		{"tenancy setting without multiTenant", replace("allowGaps: false", "allowGaps: false\ntenancy: {allowHelmHooks: true}"), []string{"tenancy: defaultServiceAccount, allowCrossNamespaceRefs and allowHelmHooks apply only with multiTenant: true"}},
		{"tenancy default account not a name", replace("allowGaps: false", "allowGaps: false\ntenancy: {multiTenant: true, defaultServiceAccount: Not_A_Name}"), []string{`tenancy.defaultServiceAccount "Not_A_Name"`}},
		{"concurrent negative", replace("allowGaps: false", "allowGaps: false\nconcurrent: -1"), []string{"concurrent: -1, want 1 or more"}},
		{"minSequence negative", replace("allowGaps: false", "allowGaps: false\nminSequence: -1"), []string{"minSequence: want uint64"}},
		{"no sources", replace("  - dir: /var/lib/ferry/drop\n  - s3: {endpoint: minio.example:9000, bucket: bundles, prefix: site-a/, insecure: false}\n  - registry: {repository: registry.example/ferry/bundles, plainHTTP: false}\n", "  []\n"), []string{"sources: name at least one source of bundles"}},
		{"source with two kinds", replace("  - dir: /var/lib/ferry/drop\n", "  - dir: /var/lib/ferry/drop\n    registry: {repository: r.example/b}\n"), []string{"sources[0]: set exactly one of dir, s3, registry (set: dir, registry)"}},
		{"empty source", replace("  - dir: /var/lib/ferry/drop\n", "  - {}\n"), []string{"sources[0]: set exactly one of dir, s3, registry (set: none)"}},
		{"same source twice", replace("  - dir: /var/lib/ferry/drop\n", "  - dir: /var/lib/ferry/drop\n  - dir: /var/lib/ferry/drop\n"), []string{"sources[1]: the same source as sources[0]"}},
		{"s3 without endpoint", replace("endpoint: minio.example:9000, ", ""), []string{"sources[1].s3.endpoint: required"}},
		{"s3 endpoint with scheme", replace("endpoint: minio.example:9000", "endpoint: \"https://minio.example:9000\""), []string{"sources[1].s3.endpoint: \"https://minio.example:9000\": want host:port"}},
		{"s3 without bucket", replace("bucket: bundles, ", ""), []string{"sources[1].s3.bucket: required"}},
		{"s3 prefix climbs", replace("prefix: site-a/", "prefix: ../site-b"), []string{"sources[1].s3.prefix: \"../site-b\" is not a plain path"}},
		{"s3 insecure not a bool", replace("insecure: false", "insecure: nope"), []string{"sources.s3.insecure: want bool, got string"}},
		{"registry with a tag", replace("registry.example/ferry/bundles", "registry.example/ferry/bundles:edge"), []string{"sources[2].registry.repository: \"registry.example/ferry/bundles:edge\": name the repository without a tag"}},
		{"registry not a reference", replace("registry.example/ferry/bundles", "not a reference"), []string{"sources[2].registry.repository: \"not a reference\""}},
		{"registry without repository", replace("repository: registry.example/ferry/bundles, ", ""), []string{"sources[2].registry.repository: required"}},
		{"limit size without unit sense", replace("maxBlobSize: 64GiB", "maxBlobSize: lots"), []string{"limits.maxBlobSize: size \"lots\""}},
		{"limit count negative", replace("maxBlobs: 5000", "maxBlobs: -1"), []string{"limits.maxBlobs: -1 is negative"}},
		{"limit unknown", replace("maxParts: 10", "maxParts: 10, maxItems: 3"), []string{"limits.maxItems: unknown field"}},
		{"keep zero", replace("retention: {keep: 3}", "retention: {keep: -2}"), []string{"retention.keep: -2, want at least 1"}},
		{"poll not a duration", replace("poll: 10s", "poll: often"), []string{"intervals.poll: \"often\": want a positive duration"}},
		{"reconcile zero", replace("reconcile: 1m", "reconcile: 0s"), []string{"intervals.reconcile: \"0s\": want a positive duration"}},
		{"retry bounds backwards", replace("retryMin: 5s, retryMax: 5m", "retryMin: 10m, retryMax: 5m"), []string{"intervals.retryMin: 10m0s is longer than intervals.retryMax 5m0s"}},
		{"interval a number", replace("poll: 10s", "poll: 10"), []string{"intervals.poll: want a duration"}},
		{"tls cert without key", replace(`tlsCert: ""`, `tlsCert: tls.crt`), []string{"serve.tlsCert, serve.tlsKey: give both or neither"}},
		{"serve unknown field", replace(`gitWorkDir: ""`, `gitWorkDir: "", auth: x`), []string{"serve.auth: unknown field"}},
		{"health on the serve address", replace(`health: {listen: ":8080"}`, `health: {listen: ":5000"}`), []string{`health.listen: ":5000" is also serve.listen`}},
		{"installCRDs not a bool", replace("installCRDs: true", "installCRDs: yes please"), []string{"installCRDs: want bool, got string"}},
		{"lease namespace invalid", replace("namespace: ferry-system", "namespace: Ferry_System"), []string{`leaderElection.namespace: "Ferry_System"`}},
		{"lease name invalid", replace("name: ferry-sync}", "name: \"ferry sync\"}"), []string{`leaderElection.name: "ferry sync"`}},
		{"several problems at once", replace("threshold: 1", "threshold: 5\nbogus: 1"), []string{"bogus: unknown field"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := agent.ParseConfig("sync.yaml", []byte(tc.yaml))
			if err == nil {
				t.Fatal("accepted")
			}
			var ce *agent.ConfigError
			if !errors.As(err, &ce) || ce.Source != "sync.yaml" || !strings.HasPrefix(err.Error(), "sync configuration sync.yaml:") {
				t.Fatalf("want a *ConfigError naming sync.yaml, got %T %v", err, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error does not say %q:\n%v", w, err)
				}
			}
		})
	}
}

// LoadConfig names the file it cannot read; Policy names the key it cannot load, and loads
// the keys it can with their validity window.
func TestLoadConfigAndKeys(t *testing.T) {
	dir := t.TempDir()
	if _, err := agent.LoadConfig(filepath.Join(dir, "missing.yaml")); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Fatalf("LoadConfig of a missing file: %v", err)
	}
	key := filepath.Join(dir, "cosign.pub")
	if err := os.WriteFile(key, testbundle.NewSigner(t).PublicPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "sync.yaml")
	body := "apiVersion: ferry.dev/v1alpha1\nkind: SyncConfig\nkeys:\n  - path: " + key + "\n    notAfter: 2027-01-01T00:00:00Z\n  - path: " + filepath.Join(dir, "nope.pub") + "\nsources: [{dir: " + dir + "}]\n"
	if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := agent.LoadConfig(file)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Policy(nil); err == nil || !strings.HasPrefix(err.Error(), "keys[1].path: ") {
		t.Fatalf("Policy with a missing key file: %v, want an error naming keys[1].path", err)
	}
	c.Keys = c.Keys[:1]
	p, err := c.Policy(nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Keys) != 1 || p.Keys[0].Name != key || !p.Keys[0].NotAfter.Equal(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)) || p.Threshold != 1 {
		t.Fatalf("policy: %+v", p)
	}
	// A change made after loading (as flags make) is checked again.
	c.Sources = nil
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "sources: name at least one source of bundles") {
		t.Fatalf("Validate after removing the sources: %v", err)
	}
}

// writeHTPasswd writes an htpasswd file of one user and its bcrypt hash, as htpasswd -B does.
func writeHTPasswd(t *testing.T, path, user, password string) {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("# nodes\n"+user+":"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// serve.htpasswd, serve.bearerTokens, serve.rateLimit and serve.burst: the values are checked
// when the file is parsed, the files when they are loaded (ServeOptions, which agent.New calls
// before it listens), each error naming its field.
func TestServeProtections(t *testing.T) {
	dir := t.TempDir()
	htpasswd := filepath.Join(dir, "htpasswd")
	writeHTPasswd(t, htpasswd, "node", "s3cret")
	file := func(name, body string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tokens := file("tokens", "tok-123\n  tok-456\n\n")
	head := "apiVersion: ferry.dev/v1alpha1\nkind: SyncConfig\nkeys: [{path: k.pub}]\nsources: [{dir: /drop}]\n"
	for _, tc := range []struct {
		name  string
		serve string // the serve: section
		// want checks ServeOptions' result, for a configuration that loads.
		want func(t *testing.T, o protections)
		// parseErr and loadErr are what ParseConfig and ServeOptions say (one of them fails).
		parseErr, loadErr string
	}{
		{name: "none: open, unlimited, default burst", serve: "{}", want: func(t *testing.T, o protections) {
			if len(o.users) != 0 || len(o.tokens) != 0 || o.rate != 0 || o.burst != agent.DefaultServeBurst {
				t.Fatalf("options %+v, want no credentials, rate 0, burst %d", o, agent.DefaultServeBurst)
			}
		}},
		{name: "all four", serve: "{htpasswd: " + htpasswd + ", bearerTokens: " + tokens + ", rateLimit: 2.5, burst: 7}", want: func(t *testing.T, o protections) {
			if len(o.users) != 1 || o.users[0] != "node" || strings.Join(o.tokens, " ") != "tok-123 tok-456" || o.rate != 2.5 || o.burst != 7 {
				t.Fatalf("options %+v", o)
			}
		}},
		{name: "htpasswd alone", serve: "{htpasswd: " + htpasswd + "}", want: func(t *testing.T, o protections) {
			if len(o.users) != 1 || len(o.tokens) != 0 || o.burst != agent.DefaultServeBurst {
				t.Fatalf("options %+v", o)
			}
		}},
		{name: "tokens alone, a whole-number rate", serve: "{bearerTokens: " + tokens + ", rateLimit: 20}", want: func(t *testing.T, o protections) {
			if len(o.users) != 0 || len(o.tokens) != 2 || o.rate != 20 {
				t.Fatalf("options %+v", o)
			}
		}},
		{name: "negative rate", serve: "{rateLimit: -1}", parseErr: "serve.rateLimit: -1, want requests per second per client (0: unlimited)"},
		{name: "rate not a number", serve: "{rateLimit: fast}", parseErr: "serve.rateLimit: want float64, got string"},
		{name: "negative burst", serve: "{burst: -3}", parseErr: "serve.burst: -3 is negative"},
		{name: "burst not a whole number", serve: "{burst: 1.5}", parseErr: "serve.burst: want int, got number 1.5"},
		{name: "misspelled field", serve: "{htpassword: x}", parseErr: "serve.htpassword: unknown field; known fields here: listen, tlsCert, tlsKey, gitWorkDir, htpasswd, bearerTokens, rateLimit, burst"},
		{name: "htpasswd missing", serve: "{htpasswd: " + filepath.Join(dir, "nope") + "}", loadErr: "serve.htpasswd: open " + filepath.Join(dir, "nope") + ": no such file or directory"},
		{name: "htpasswd not user:hash", serve: "{htpasswd: " + file("plain", "node:s3cret\n") + "}", loadErr: "serve.htpasswd: " + filepath.Join(dir, "plain") + ":1: want user:bcrypt-hash (htpasswd -B)"},
		{name: "htpasswd without entries", serve: "{htpasswd: " + file("comments", "# nobody yet\n\n") + "}", loadErr: "serve.htpasswd: " + filepath.Join(dir, "comments") + " has no user:bcrypt-hash entries"},
		{name: "htpasswd hash broken", serve: "{htpasswd: " + file("broken", "node:$2y$10$short\n") + "}", loadErr: "serve.htpasswd: " + filepath.Join(dir, "broken") + `: user "node": not a bcrypt hash`},
		{name: "tokens missing", serve: "{bearerTokens: " + filepath.Join(dir, "nope") + "}", loadErr: "serve.bearerTokens: open " + filepath.Join(dir, "nope") + ": no such file or directory"},
		{name: "tokens empty", serve: "{bearerTokens: " + file("empty", "\n \n") + "}", loadErr: "serve.bearerTokens: " + filepath.Join(dir, "empty") + " holds no tokens"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := agent.ParseConfig("sync.yaml", []byte(head+"serve: "+tc.serve+"\n"))
			if tc.parseErr != "" {
				var ce *agent.ConfigError
				if !errors.As(err, &ce) || !strings.Contains(err.Error(), tc.parseErr) {
					t.Fatalf("ParseConfig: %v, want a *ConfigError saying %q", err, tc.parseErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			o, err := c.ServeOptions()
			if tc.loadErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tc.loadErr) {
					t.Fatalf("ServeOptions: %v, want an error starting %q", err, tc.loadErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := protections{tokens: o.BearerTokens, rate: o.RatePerSecond, burst: o.Burst}
			for u := range o.BasicAuth {
				got.users = append(got.users, u)
			}
			tc.want(t, got)
		})
	}
	// A change made after loading (as flags make) is checked again.
	c, err := agent.ParseConfig("sync.yaml", []byte(head))
	if err != nil {
		t.Fatal(err)
	}
	c.Serve.RateLimit = -0.5
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "serve.rateLimit: -0.5") {
		t.Fatalf("Validate with a negative rate: %v", err)
	}
}

// protections is what the test looks at of a serve.Options.
type protections struct {
	users  []string
	tokens []string
	rate   float64
	burst  int
}

// The example configuration in docs/agent.md parses, every field of it known, and its values
// are the defaults the page says.
func TestDocsExampleConfigParses(t *testing.T) {
	page, err := os.ReadFile("../docs/agent.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(page), "```yaml\n")
	example, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("docs/agent.md has no yaml example")
	}
	cfg, err := agent.ParseConfig("docs/agent.md", []byte(example))
	if err != nil {
		t.Fatalf("the example in docs/agent.md does not parse: %v", err)
	}
	if cfg.Intervals.Stall.Duration != agent.DefaultStall || cfg.Serve.Git.MaxPerRepository != 2 || cfg.OnExpiry != agent.OnExpiryKeep {
		t.Fatalf("the example's values are not the defaults it shows: %+v", cfg)
	}
}
