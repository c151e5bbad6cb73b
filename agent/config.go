package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net"
	"os"
	"reflect"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/internal/authfile"
	"github.com/ferry-gitops/ferry/internal/cli"
	"github.com/ferry-gitops/ferry/internal/strictyaml"
	"github.com/ferry-gitops/ferry/medium"
	"github.com/ferry-gitops/ferry/reconcile"
	"github.com/ferry-gitops/ferry/serve"
	"github.com/ferry-gitops/ferry/verify"
)

// The configuration file's apiVersion and kind.
const (
	APIVersion = "ferry.dev/v1alpha1"
	Kind       = "SyncConfig"
)

// Defaults of fields the configuration file leaves out.
const (
	DefaultCache            = "/var/lib/ferry/cache"
	DefaultKeep             = 3
	DefaultPoll             = 10 * time.Second
	DefaultReconcile        = time.Minute
	DefaultRetryMin         = 5 * time.Second
	DefaultRetryMax         = 5 * time.Minute
	DefaultStall            = 2 * time.Minute
	DefaultServeListen      = ":5000"
	DefaultServeBurst       = 100
	DefaultHealthListen     = ":8080"
	DefaultLeaseNamespace   = "ferry-system"
	DefaultLeaseName        = "ferry-sync"
	DefaultStatusConfigMap  = "ferry-sync-status"
	defaultStatusRejections = 10
)

// The values of onExpiry.
const (
	OnExpiryKeep          = "keep"
	OnExpiryStopReconcile = "stop-reconcile"
)

// Config is the agent's configuration file (kind SyncConfig). docs/agent.md describes every
// field.
type Config struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	// Cache is the cache directory.
	Cache string `json:"cache"`
	// Keys are the pinned public keys bundles must be signed by (at least one).
	Keys []KeyConfig `json:"keys"`
	// Threshold is how many distinct keys must have signed a bundle (default 1).
	Threshold int `json:"threshold"`
	// AllowGaps accepts a bundle whose previous bundle is not the current one.
	AllowGaps bool `json:"allowGaps"`
	// MinSequence is the operator's rollback floor: bundles at or below it are refused. It lives
	// in the configuration, so it holds when the cache volume (and its state) is lost.
	MinSequence uint64 `json:"minSequence,omitempty"`
	// OnExpiry is what the agent does once the current bundle has expired: keep (the default:
	// keep serving and reconciling it, and alert) or stop-reconcile (keep serving, stop
	// reconciling until a fresh bundle is accepted).
	OnExpiry string `json:"onExpiry,omitempty"`
	// Sources are where bundles arrive (at least one).
	Sources []SourceConfig `json:"sources"`
	// Limits bound what a bundle may hold (bundle.Limits; zero: the default).
	Limits LimitsConfig `json:"limits"`
	// Retention is what the cache keeps after each import.
	Retention RetentionConfig `json:"retention"`
	// Intervals are the agent's timings.
	Intervals IntervalsConfig `json:"intervals"`
	// Serve is the registry and Git remote the agent serves the cache on.
	Serve ServeConfig `json:"serve"`
	// Health is the listener of /healthz, /readyz and /metrics.
	Health HealthConfig `json:"health"`
	// Kubeconfig is a kubeconfig file; empty: the in-cluster credentials.
	Kubeconfig string `json:"kubeconfig"`
	// Concurrent is how many Kustomizations and HelmReleases a reconciliation pass works on
	// at once, each after its dependsOn (default reconcile.DefaultConcurrent, 4).
	Concurrent int `json:"concurrent,omitempty"`
	// InstallCRDs installs or updates the CRDs of the Flux kinds sync reconciles before the first reconciliation.
	InstallCRDs bool `json:"installCRDs"`
	// LeaderElection makes replicas safe: only the leader imports and reconciles.
	LeaderElection LeaderElectionConfig `json:"leaderElection"`
	// Tenancy locks a cluster shared by tenants down (docs/tenancy.md).
	Tenancy TenancyConfig `json:"tenancy"`
}

// TenancyConfig are the lockdown settings (reconcile.Tenancy), all on with MultiTenant.
type TenancyConfig struct {
	// MultiTenant turns lockdown on: a Kustomization or HelmRelease that names no
	// ServiceAccount, and is not of the bundle's signed cluster item, is applied as
	// DefaultServiceAccount of its own namespace; references across namespaces are refused;
	// tenants' Helm hooks are off.
	MultiTenant bool `json:"multiTenant"`
	// DefaultServiceAccount is that ServiceAccount (default "default").
	DefaultServiceAccount string `json:"defaultServiceAccount,omitempty"`
	// AllowCrossNamespaceRefs lets sourceRef, dependsOn, healthChecks and chart references
	// name other namespaces.
	AllowCrossNamespaceRefs bool `json:"allowCrossNamespaceRefs,omitempty"`
	// AllowHelmHooks lets tenants' HelmReleases run their charts' hooks.
	AllowHelmHooks bool `json:"allowHelmHooks,omitempty"`
}

// Reconcile returns the settings as the reconciler takes them: nil without MultiTenant.
func (t TenancyConfig) Reconcile() *reconcile.Tenancy {
	if !t.MultiTenant {
		return nil
	}
	sa := t.DefaultServiceAccount
	if sa == "" {
		sa = "default"
	}
	return &reconcile.Tenancy{DefaultServiceAccount: sa, NoCrossNamespaceRefs: !t.AllowCrossNamespaceRefs, AllowHelmHooks: t.AllowHelmHooks}
}

// KeyConfig is one pinned public key and when its signatures are accepted (see
// verify.TrustedKey).
type KeyConfig struct {
	// Path is a PEM public key file (cosign.pub).
	Path string `json:"path"`
	// NotBefore and NotAfter bound the key's validity (zero: unbounded).
	NotBefore time.Time `json:"notBefore,omitzero"`
	NotAfter  time.Time `json:"notAfter,omitzero"`
}

// SourceConfig is one source of bundles: exactly one of Dir, S3 and Registry.
type SourceConfig struct {
	// Dir is a drop directory.
	Dir string `json:"dir,omitempty"`
	// S3 is a bucket prefix holding part lists.
	S3 *S3Source `json:"s3,omitempty"`
	// Registry is a repository whose every tag is a candidate bundle.
	Registry *RegistrySource `json:"registry,omitempty"`
}

// S3Source is a bucket prefix of an S3-compatible store. Credentials come from the
// environment (see medium.NewS3Client).
type S3Source struct {
	// Endpoint is host:port.
	Endpoint string `json:"endpoint"`
	Bucket   string `json:"bucket"`
	Prefix   string `json:"prefix"`
	// Insecure reaches the endpoint over plain HTTP.
	Insecure bool `json:"insecure"`
}

// RegistrySource is a repository of an OCI registry. Credentials come from Docker's
// configuration (see medium.NewRepository).
type RegistrySource struct {
	// Repository is host/path, without a tag.
	Repository string `json:"repository"`
	// PlainHTTP reaches the registry over plain HTTP.
	PlainHTTP bool `json:"plainHTTP"`
}

// LimitsConfig are bundle.Limits as the file writes them: sizes as "64GiB" or a number of bytes.
type LimitsConfig struct {
	MaxManifestSize Size `json:"maxManifestSize,omitzero"`
	MaxBlobs        int  `json:"maxBlobs,omitempty"`
	MaxBlobSize     Size `json:"maxBlobSize,omitzero"`
	MaxTotalSize    Size `json:"maxTotalSize,omitzero"`
	MaxAttachments  int  `json:"maxAttachments,omitempty"`
	MaxPartListSize Size `json:"maxPartListSize,omitzero"`
	MaxParts        int  `json:"maxParts,omitempty"`
}

// Bundle returns the limits as the reader takes them.
func (l LimitsConfig) Bundle() bundle.Limits {
	return bundle.Limits{MaxManifestSize: int64(l.MaxManifestSize), MaxBlobs: l.MaxBlobs, MaxBlobSize: int64(l.MaxBlobSize),
		MaxTotalSize: int64(l.MaxTotalSize), MaxAttachments: l.MaxAttachments, MaxPartListSize: int64(l.MaxPartListSize), MaxParts: l.MaxParts}
}

// RetentionConfig is what garbage collection keeps after each import.
type RetentionConfig struct {
	// Keep is how many of the latest bundles the cache keeps (default 3).
	Keep int `json:"keep"`
}

// IntervalsConfig are the agent's timings.
type IntervalsConfig struct {
	// Poll is how often sources are listed (default 10s).
	Poll Duration `json:"poll,omitzero"`
	// Reconcile is how often the cluster is reconciled, besides after each import (default 1m).
	Reconcile Duration `json:"reconcile,omitzero"`
	// RetryMin and RetryMax bound the exponential backoff after a transient error (5s, 5m).
	RetryMin Duration `json:"retryMin,omitzero"`
	RetryMax Duration `json:"retryMax,omitzero"`
	// Stall stops a read from a source once it sent no byte of the bundle for this long
	// (default 2m): a medium failure, retried with backoff, so a source that trickles bytes
	// holds nothing back for ever.
	Stall Duration `json:"stall,omitzero"`
}

// ServeConfig is the registry and Git remote the cache is served on, and what protects them
// (as sync serve's flags do; see serve.Options).
type ServeConfig struct {
	Listen     string `json:"listen"`
	TLSCert    string `json:"tlsCert"`
	TLSKey     string `json:"tlsKey"`
	GitWorkDir string `json:"gitWorkDir"`
	// HTPasswd is an htpasswd file of bcrypt entries (htpasswd -B): clients must authenticate
	// with basic authentication against it, or with a bearer token. Empty: no basic auth.
	HTPasswd string `json:"htpasswd"`
	// BearerTokens is a file of tokens (one per line) accepted as "Authorization: Bearer
	// <token>". Empty: none. With neither file, anyone who reaches the listener may read.
	BearerTokens string `json:"bearerTokens"`
	// RateLimit is the requests per second allowed to each client (0: unlimited).
	RateLimit float64 `json:"rateLimit"`
	// Burst is how many requests a client may make at once above the rate (default 100).
	Burst int `json:"burst"`
	// ProtectHealth puts the serve listener's /healthz and /readyz behind the same
	// authentication (the health listener's endpoints are unaffected).
	ProtectHealth bool `json:"protectHealth,omitzero"`
	// Git bounds what clients can make the Git remote do; zero fields take its defaults.
	Git GitLimitsConfig `json:"git,omitzero"`
}

// GitLimitsConfig bounds the Git remote (see serve.GitLimits): requests served at once overall
// and per repository, a request's deadline, and what one fetch may cost.
type GitLimitsConfig struct {
	MaxConcurrent    int      `json:"maxConcurrent,omitzero"`
	MaxPerRepository int      `json:"maxPerRepository,omitzero"`
	RequestTimeout   Duration `json:"requestTimeout,omitzero"`
	MaxObjects       int      `json:"maxObjects,omitzero"`
	MaxPackBytes     Size     `json:"maxPackBytes,omitzero"`
}

// limits returns g as the Git remote's limits.
func (g GitLimitsConfig) limits() serve.GitLimits {
	return serve.GitLimits{MaxConcurrent: g.MaxConcurrent, MaxPerRepository: g.MaxPerRepository,
		RequestTimeout: g.RequestTimeout.Duration, MaxObjects: g.MaxObjects, MaxPackBytes: int64(g.MaxPackBytes)}
}

// HealthConfig is the listener of /healthz, /readyz and /metrics.
type HealthConfig struct {
	Listen string `json:"listen"`
}

// LeaderElectionConfig names the Lease replicas elect a leader with.
type LeaderElectionConfig struct {
	Enabled   bool   `json:"enabled"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

// Duration is a time.Duration written as "10s", "1m30s".
type Duration struct{ time.Duration }

// UnmarshalJSON reads a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a duration such as 10s or 1m")
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// MarshalJSON writes a duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// Size is a number of bytes written as "64GiB", "700MB" or a plain number.
type Size int64

// UnmarshalJSON reads a size (see cli.ParseSize).
func (s *Size) UnmarshalJSON(b []byte) error {
	v, err := parseSize(b)
	if err != nil {
		return err
	}
	*s = Size(v)
	return nil
}

func parseSize(b []byte) (int64, error) {
	var str string
	if err := json.Unmarshal(b, &str); err != nil {
		var n json.Number
		if err := json.Unmarshal(b, &n); err != nil {
			return 0, fmt.Errorf("want a size such as 64GiB, 700MB or a number of bytes")
		}
		str = n.String()
	}
	return cli.ParseSize(str)
}

// ConfigError lists every problem of a configuration, each naming its field.
type ConfigError struct {
	Source   string
	Problems []string
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("sync configuration %s: %d problem(s):\n  %s", e.Source, len(e.Problems), strings.Join(e.Problems, "\n  "))
}

// DefaultConfig returns a configuration with every default set and no keys or sources: what
// flags alone start from.
func DefaultConfig() *Config {
	c := &Config{APIVersion: APIVersion, Kind: Kind}
	c.setDefaults()
	return c
}

// LoadConfig reads, checks and completes the configuration file at path.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("sync configuration %s: %w", path, err)
	}
	return ParseConfig(path, data)
}

// ParseConfig parses a configuration strictly (an unknown field is an error naming it), sets
// the defaults and validates it; source names it in errors.
func ParseConfig(source string, data []byte) (*Config, error) {
	raw, jsonData, err := strictyaml.Decode(data)
	if err != nil {
		return nil, &ConfigError{Source: source, Problems: []string{"not valid YAML: " + err.Error()}}
	}
	if _, ok := raw.(map[string]any); !ok {
		return nil, &ConfigError{Source: source, Problems: []string{"want a mapping with apiVersion: " + APIVersion + " and kind: " + Kind}}
	}
	if problems := (strictyaml.Checker{Leaf: checkLeaf, Shapes: true}).Check(raw, reflect.TypeFor[Config]()); len(problems) > 0 {
		return nil, &ConfigError{Source: source, Problems: problems}
	}
	var c Config
	if err := json.NewDecoder(bytes.NewReader(jsonData)).Decode(&c); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return nil, &ConfigError{Source: source, Problems: []string{fmt.Sprintf("%s: want %s, got %s", te.Field, te.Type, te.Value)}}
		}
		return nil, &ConfigError{Source: source, Problems: []string{err.Error()}}
	}
	if err := c.validate(source); err != nil {
		return nil, err
	}
	return &c, nil
}

var (
	durationType = reflect.TypeOf(Duration{})
	sizeType     = reflect.TypeOf(Size(0))
	timeType     = reflect.TypeOf(time.Time{})
)

// checkLeaf checks the values of the configuration's own scalar types (durations, sizes,
// times), which their decoders would report without a path.
func checkLeaf(_ string, v any, t reflect.Type) (string, bool) {
	switch t {
	case durationType:
		s, ok := v.(string)
		if !ok {
			return fmt.Sprintf("want a duration such as 10s or 1m, got %v", v), true
		}
		if d, err := time.ParseDuration(s); err != nil || d <= 0 {
			return fmt.Sprintf("%q: want a positive duration such as 10s or 1m", s), true
		}
		return "", true
	case sizeType:
		b, _ := json.Marshal(v)
		if _, err := parseSize(b); err != nil {
			return err.Error(), true
		}
		return "", true
	case timeType:
		s, ok := v.(string)
		if _, err := time.Parse(time.RFC3339, s); !ok || err != nil {
			return fmt.Sprintf("%v: want a time such as 2026-01-01T00:00:00Z (RFC 3339)", v), true
		}
		return "", true
	}
	return "", false
}

// setDefaults fills what the file left out.
func (c *Config) setDefaults() {
	if c.Cache == "" {
		c.Cache = DefaultCache
	}
	if c.Threshold == 0 {
		c.Threshold = 1
	}
	if c.OnExpiry == "" {
		c.OnExpiry = OnExpiryKeep
	}
	if c.Retention.Keep == 0 {
		c.Retention.Keep = DefaultKeep
	}
	for _, d := range []struct {
		v   *Duration
		def time.Duration
	}{{&c.Intervals.Poll, DefaultPoll}, {&c.Intervals.Reconcile, DefaultReconcile}, {&c.Intervals.RetryMin, DefaultRetryMin}, {&c.Intervals.RetryMax, DefaultRetryMax}, {&c.Intervals.Stall, DefaultStall}} {
		if d.v.Duration == 0 {
			d.v.Duration = d.def
		}
	}
	if c.Serve.Listen == "" {
		c.Serve.Listen = DefaultServeListen
	}
	if c.Serve.Burst == 0 {
		c.Serve.Burst = DefaultServeBurst
	}
	if c.Health.Listen == "" {
		c.Health.Listen = DefaultHealthListen
	}
	if c.LeaderElection.Namespace == "" {
		c.LeaderElection.Namespace = DefaultLeaseNamespace
	}
	if c.LeaderElection.Name == "" {
		c.LeaderElection.Name = DefaultLeaseName
	}
}

// Validate sets the defaults and checks every field, naming each that is wrong. Call it after
// changing a configuration (for example from flags).
func (c *Config) Validate() error { return c.validate("") }

func (c *Config) validate(source string) error {
	c.setDefaults()
	var p []string
	add := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }
	if c.APIVersion != APIVersion {
		add("apiVersion: %q, want %s", c.APIVersion, APIVersion)
	}
	if c.Kind != Kind {
		add("kind: %q, want %s", c.Kind, Kind)
	}
	if len(c.Keys) == 0 {
		add("keys: pin at least one public key bundles must be signed by (sync run --key)")
	}
	paths := map[string]int{}
	for i, k := range c.Keys {
		f := fmt.Sprintf("keys[%d]", i)
		if k.Path == "" {
			add("%s.path: required", f)
		} else if j, dup := paths[k.Path]; dup {
			add("%s.path: %s is already keys[%d]", f, k.Path, j)
		} else {
			paths[k.Path] = i
		}
		if !k.NotBefore.IsZero() && !k.NotAfter.IsZero() && !k.NotAfter.After(k.NotBefore) {
			add("%s.notAfter: %s is not after notBefore %s", f, k.NotAfter.Format(time.RFC3339), k.NotBefore.Format(time.RFC3339))
		}
	}
	if c.Threshold < 1 || (len(c.Keys) > 0 && c.Threshold > len(c.Keys)) {
		add("threshold: %d, want between 1 and the number of keys (%d)", c.Threshold, len(c.Keys))
	}
	if t := c.Tenancy; !t.MultiTenant && (t.DefaultServiceAccount != "" || t.AllowCrossNamespaceRefs || t.AllowHelmHooks) {
		add("tenancy: defaultServiceAccount, allowCrossNamespaceRefs and allowHelmHooks apply only with multiTenant: true")
	}
	if sa := c.Tenancy.DefaultServiceAccount; sa != "" {
		if errs := validation.IsDNS1123Subdomain(sa); len(errs) > 0 {
			add("tenancy.defaultServiceAccount %q: %s", sa, strings.Join(errs, "; "))
		}
	}
	if c.Concurrent < 0 {
		add("concurrent: %d, want 1 or more (0: the default, %d)", c.Concurrent, reconcile.DefaultConcurrent)
	}
	if c.OnExpiry != OnExpiryKeep && c.OnExpiry != OnExpiryStopReconcile {
		add("onExpiry: %q, want %s or %s", c.OnExpiry, OnExpiryKeep, OnExpiryStopReconcile)
	}
	if len(c.Sources) == 0 {
		add("sources: name at least one source of bundles: dir, s3 or registry (sync run --drop-dir)")
	}
	seen := map[string]int{}
	for i, s := range c.Sources {
		f := fmt.Sprintf("sources[%d]", i)
		var set []string
		if s.Dir != "" {
			set = append(set, "dir")
		}
		if s.S3 != nil {
			set = append(set, "s3")
			if s.S3.Endpoint == "" {
				add("%s.s3.endpoint: required (host:port)", f)
			} else if strings.Contains(s.S3.Endpoint, "://") || strings.Contains(s.S3.Endpoint, "/") {
				add("%s.s3.endpoint: %q: want host:port, without a scheme or path (insecure: true for plain HTTP)", f, s.S3.Endpoint)
			}
			if s.S3.Bucket == "" {
				add("%s.s3.bucket: required", f)
			}
			if pre := strings.Trim(s.S3.Prefix, "/"); pre != "" && (!fs.ValidPath(pre) || strings.Contains(pre, "..")) {
				add("%s.s3.prefix: %q is not a plain path (no empty, \".\" or \"..\" elements)", f, s.S3.Prefix)
			}
		}
		if s.Registry != nil {
			set = append(set, "registry")
			if s.Registry.Repository == "" {
				add("%s.registry.repository: required (host/path)", f)
			} else if err := medium.CheckRepository(s.Registry.Repository); err != nil && !errors.Is(err, medium.ErrTagged) {
				add("%s.registry.repository: %q: %v", f, s.Registry.Repository, err)
			} else if err != nil {
				add("%s.registry.repository: %q: name the repository without a tag or digest: every tag is a candidate", f, s.Registry.Repository)
			}
		}
		if len(set) != 1 {
			add("%s: set exactly one of dir, s3, registry (set: %s)", f, orNone(set))
			continue
		}
		key := sourceKey(s)
		if j, dup := seen[key]; dup {
			add("%s: the same source as sources[%d]", f, j)
		}
		seen[key] = i
	}
	for _, n := range []struct {
		field string
		v     int
	}{{"limits.maxBlobs", c.Limits.MaxBlobs}, {"limits.maxAttachments", c.Limits.MaxAttachments}, {"limits.maxParts", c.Limits.MaxParts}} {
		if n.v < 0 {
			add("%s: %d is negative", n.field, n.v)
		}
	}
	for _, n := range []struct {
		field string
		v     Size
	}{{"limits.maxManifestSize", c.Limits.MaxManifestSize}, {"limits.maxBlobSize", c.Limits.MaxBlobSize}, {"limits.maxTotalSize", c.Limits.MaxTotalSize}, {"limits.maxPartListSize", c.Limits.MaxPartListSize}} {
		if n.v < 0 {
			add("%s: %d is negative", n.field, n.v)
		}
	}
	if c.Retention.Keep < 1 {
		add("retention.keep: %d, want at least 1 (the current bundle)", c.Retention.Keep)
	}
	for _, d := range []struct {
		field string
		v     time.Duration
	}{{"intervals.poll", c.Intervals.Poll.Duration}, {"intervals.reconcile", c.Intervals.Reconcile.Duration}, {"intervals.retryMin", c.Intervals.RetryMin.Duration}, {"intervals.retryMax", c.Intervals.RetryMax.Duration}, {"intervals.stall", c.Intervals.Stall.Duration}} {
		if d.v <= 0 {
			add("%s: %s, want a positive duration", d.field, d.v)
		}
	}
	if c.Intervals.RetryMin.Duration > c.Intervals.RetryMax.Duration {
		add("intervals.retryMin: %s is longer than intervals.retryMax %s", c.Intervals.RetryMin, c.Intervals.RetryMax)
	}
	if (c.Serve.TLSCert == "") != (c.Serve.TLSKey == "") {
		add("serve.tlsCert, serve.tlsKey: give both or neither")
	}
	if r := c.Serve.RateLimit; r < 0 || math.IsNaN(r) || math.IsInf(r, 0) {
		add("serve.rateLimit: %v, want requests per second per client (0: unlimited)", r)
	}
	if c.Serve.Burst < 0 {
		add("serve.burst: %d is negative", c.Serve.Burst)
	}
	if g := c.Serve.Git; g.MaxConcurrent < 0 || g.MaxPerRepository < 0 || g.RequestTimeout.Duration < 0 || g.MaxObjects < 0 || g.MaxPackBytes < 0 {
		add("serve.git: limits must not be negative (0 or unset: the default)")
	}
	if _, port, _ := net.SplitHostPort(c.Health.Listen); c.Serve.Listen == c.Health.Listen && port != "0" { // port 0: any free port
		add("health.listen: %q is also serve.listen; they need different addresses", c.Health.Listen)
	}
	if c.LeaderElection.Enabled {
		if errs := validation.IsDNS1123Label(c.LeaderElection.Namespace); len(errs) > 0 {
			add("leaderElection.namespace: %q: %s", c.LeaderElection.Namespace, strings.Join(errs, "; "))
		}
		if errs := validation.IsDNS1123Subdomain(c.LeaderElection.Name); len(errs) > 0 {
			add("leaderElection.name: %q: %s", c.LeaderElection.Name, strings.Join(errs, "; "))
		}
	}
	if len(p) > 0 {
		if source == "" {
			source = "(flags)"
		}
		return &ConfigError{Source: source, Problems: p}
	}
	return nil
}

func orNone(set []string) string {
	if len(set) == 0 {
		return "none"
	}
	return strings.Join(set, ", ")
}

// sourceKey identifies a source, to find the same one listed twice.
func sourceKey(s SourceConfig) string {
	switch {
	case s.S3 != nil:
		return "s3://" + s.S3.Endpoint + "/" + s.S3.Bucket + "/" + strings.Trim(s.S3.Prefix, "/")
	case s.Registry != nil:
		return "oci://" + s.Registry.Repository
	}
	return "dir:" + s.Dir
}

// Policy loads the pinned keys and returns the trust policy bundles are checked against; now is
// the clock (nil: time.Now).
func (c *Config) Policy(now func() time.Time) (verify.Policy, error) {
	p := verify.Policy{Threshold: c.Threshold, AllowGaps: c.AllowGaps, Limits: c.Limits.Bundle(), Now: now, MinSequence: c.MinSequence}
	for i, k := range c.Keys {
		key, err := verify.LoadPublicKey(k.Path)
		if err != nil {
			return p, fmt.Errorf("keys[%d].path: %w", i, err)
		}
		p.Keys = append(p.Keys, verify.TrustedKey{Key: key, NotBefore: k.NotBefore, NotAfter: k.NotAfter})
	}
	return p, nil
}

// ServeOptions loads serve.htpasswd and serve.bearerTokens (as sync serve loads its files:
// authfile.Load) and returns the protections of the served registry and Git remote. A file that
// cannot be read, does not parse, or holds no entry (which would leave the listener open while
// it looks protected) is an error naming its field.
func (c *Config) ServeOptions() (serve.Options, error) {
	o := serve.Options{RatePerSecond: c.Serve.RateLimit, Burst: c.Serve.Burst, ProtectHealth: c.Serve.ProtectHealth}
	creds, err := authfile.Load(c.Serve.HTPasswd, c.Serve.BearerTokens)
	if err != nil {
		return o, fmt.Errorf("serve.%w", err)
	}
	o.BasicAuth, o.BearerTokens = creds.BasicAuth, creds.BearerTokens
	return o, nil
}
