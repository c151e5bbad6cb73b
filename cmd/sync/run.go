package main

import (
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/klog/v2"

	"github.com/ferry-gitops/ferry/agent"
	"github.com/ferry-gitops/ferry/internal/buildinfo"
)

// runFlags are the flags of `sync run`: cfg holds the values of the flags that set one field
// (configFields), the others their own.
type runFlags struct {
	configFile string
	cfg        *agent.Config
	keys       []string
	dropDirs   []string
}

// configField is a flag that sets one field of the configuration: bind makes it set that field
// of a configuration (its default is the field's value there), copy copies the field from one
// configuration to another (a flag given overrides the file).
type configField struct {
	name string
	bind func(f *pflag.FlagSet, c *agent.Config)
	copy func(dst, src *agent.Config)
}

// field is the configField of the flag name, setting the field at returns, with pflag's binder
// of its type (f.StringVar, f.IntVar, ...).
func field[T any](name, usage string, at func(*agent.Config) *T, binder func(*pflag.FlagSet) func(*T, string, T, string)) configField {
	return configField{
		name: name,
		bind: func(f *pflag.FlagSet, c *agent.Config) { p := at(c); binder(f)(p, name, *p, usage) },
		copy: func(dst, src *agent.Config) { *at(dst) = *at(src) },
	}
}

func stringFlag(f *pflag.FlagSet) func(*string, string, string, string) { return f.StringVar }
func boolFlag(f *pflag.FlagSet) func(*bool, string, bool, string)       { return f.BoolVar }
func intFlag(f *pflag.FlagSet) func(*int, string, int, string)          { return f.IntVar }
func floatFlag(f *pflag.FlagSet) func(*float64, string, float64, string) {
	return f.Float64Var
}
func durationFlag(f *pflag.FlagSet) func(*time.Duration, string, time.Duration, string) {
	return f.DurationVar
}

// configFields are the flags of sync run that set one field of the configuration each.
var configFields = []configField{
	field("cache", "the cache directory", func(c *agent.Config) *string { return &c.Cache }, stringFlag),
	field("kubeconfig", "kubeconfig file (default: in-cluster credentials)", func(c *agent.Config) *string { return &c.Kubeconfig }, stringFlag),
	field("threshold", "how many of the keys must have signed", func(c *agent.Config) *int { return &c.Threshold }, intFlag),
	field("allow-gaps", "accept a bundle whose previous bundle is not the current one (sequence must still grow)", func(c *agent.Config) *bool { return &c.AllowGaps }, boolFlag),
	field("keep", "how many of the latest bundles the cache keeps after each import", func(c *agent.Config) *int { return &c.Retention.Keep }, intFlag),
	field("poll-interval", "how often the sources are listed", func(c *agent.Config) *time.Duration { return &c.Intervals.Poll.Duration }, durationFlag),
	field("reconcile-interval", "how often the cluster is reconciled, besides after each import", func(c *agent.Config) *time.Duration { return &c.Intervals.Reconcile.Duration }, durationFlag),
	field("listen", "address the registry and Git remote listen on", func(c *agent.Config) *string { return &c.Serve.Listen }, stringFlag),
	field("tls-cert", "TLS certificate file (PEM) of the registry and Git remote; plain HTTP without it", func(c *agent.Config) *string { return &c.Serve.TLSCert }, stringFlag),
	field("tls-key", "TLS private key file (PEM)", func(c *agent.Config) *string { return &c.Serve.TLSKey }, stringFlag),
	field("git-work-dir", "where Git repositories are built from cached packs (derived data)", func(c *agent.Config) *string { return &c.Serve.GitWorkDir }, stringFlag),
	field("htpasswd", "require basic authentication of the registry and Git remote against this htpasswd file (bcrypt entries)", func(c *agent.Config) *string { return &c.Serve.HTPasswd }, stringFlag),
	field("bearer-tokens", "accept the bearer tokens in this file (one per line)", func(c *agent.Config) *string { return &c.Serve.BearerTokens }, stringFlag),
	field("rate-limit", "requests per second allowed to each client of the registry and Git remote (0: unlimited)", func(c *agent.Config) *float64 { return &c.Serve.RateLimit }, floatFlag),
	field("burst", "requests a client may make at once above the rate", func(c *agent.Config) *int { return &c.Serve.Burst }, intFlag),
	field("health-listen", "address /healthz, /readyz and /metrics listen on", func(c *agent.Config) *string { return &c.Health.Listen }, stringFlag),
	field("leader-elect", "elect a leader with a Lease, so that several replicas are safe", func(c *agent.Config) *bool { return &c.LeaderElection.Enabled }, boolFlag),
	field("install-crds", "install or update the Flux CRDs (Kustomization, HelmRelease, the sources) before the first reconciliation", func(c *agent.Config) *bool { return &c.InstallCRDs }, boolFlag),
	field("multi-tenant", "lock the cluster down for tenants: objects naming no ServiceAccount run as their namespace's default one, no references across namespaces, no Helm hooks for tenants (docs/tenancy.md)", func(c *agent.Config) *bool { return &c.Tenancy.MultiTenant }, boolFlag),
	field("default-service-account", "with --multi-tenant, the ServiceAccount objects naming none run as (default: default)", func(c *agent.Config) *string { return &c.Tenancy.DefaultServiceAccount }, stringFlag),
	field("concurrent", "Kustomizations and HelmReleases a pass works on at once, each after its dependsOn (0: 4)", func(c *agent.Config) *int { return &c.Concurrent }, intFlag),
}

func runCommand() *cobra.Command {
	cmd, _ := newRunCommand()
	return cmd
}

// newRunCommand returns the command and the flags it parses into.
func newRunCommand() (*cobra.Command, *runFlags) {
	o := &runFlags{cfg: agent.DefaultConfig()}
	cfg := o.cfg
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the unattended agent: watch sources, verify, import, serve and reconcile",
		Long: `run is the agent that lives in the disconnected cluster. It watches its sources for new
bundles, verifies each offline against the pinned keys, imports it atomically into the cache,
serves the cache (an OCI registry and a Git remote) and reconciles the cluster from it,
after every import and every reconcile interval.

Sources:
  dir       a drop directory: bundle directories, .tar files, and part lists (NAME.parts.json),
            which wait until every part is present at its recorded size. Names starting
            with "." are ignored: copy under a hidden name, then rename into place.
  s3        part lists directly under a bucket prefix (credentials: AWS_ACCESS_KEY_ID and
            AWS_SECRET_ACCESS_KEY).
  registry  every tag of a repository (credentials: Docker's config).

New bundles are imported in ascending sequence order. A bundle that is not accepted is
rejected: it is left where it was, and reported in the log, the metric
ferry_bundles_rejected_total{check}, an Event (reason BundleRejected) on the ConfigMap
ferry-sync-status, and 'sync status'. It is not tried again until it changes. Errors of the
medium are retried with exponential backoff and are no rejection. The cluster is reconciled
only from a bundle that imported whole.

With leader election, every replica serves the cache and only the leader imports and
reconciles. /healthz, /readyz and /metrics answer on the health listener. The agent reaches
nothing but the API server (in-cluster credentials, or --kubeconfig), its sources and its
listeners. SIGTERM stops it cleanly.

The configuration file (--config) is described in docs/agent.md; flags override it, and
without it flags alone configure the agent.`,
		Example: `  # From a configuration file (kind: SyncConfig)
  sync run --config /etc/ferry/sync.yaml

  # Flags alone: one key, one drop directory, a kubeconfig
  sync run --key /etc/ferry/cosign.pub --drop-dir /media/usb --cache /var/lib/ferry/cache \
    --kubeconfig ~/.kube/config --install-crds

  # A file, with a flag overriding it
  sync run --config sync.yaml --leader-elect=false --health-listen :9090`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := o.config(cmd)
			if err != nil {
				return err
			}
			log := slog.New(slog.NewJSONHandler(cmd.ErrOrStderr(), nil))
			klog.SetSlogLogger(log) // client-go's own lines (leader election) as JSON too
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			a, err := agent.New(*cfg, agent.Options{Logger: log, Version: buildinfo.Get().Version})
			if err != nil {
				return err
			}
			return a.Run(ctx)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.configFile, "config", "", "configuration file (kind: SyncConfig; see docs/agent.md)")
	f.StringSliceVar(&o.keys, "key", nil, "public key (cosign.pub) bundles must be signed by; repeat for several (replaces the file's keys)")
	f.StringSliceVar(&o.dropDirs, "drop-dir", nil, "drop directory to watch for bundles; repeat for several (replaces the file's dir sources)")
	for _, field := range configFields {
		field.bind(f, cfg)
	}
	return cmd, o
}

// config is the agent's configuration: the file (--config) if given, with the flags given on
// the command line overriding it, or the flags alone. --key and --drop-dir replace the file's
// keys and dir sources (its S3 and registry sources stay).
func (o *runFlags) config(cmd *cobra.Command) (*agent.Config, error) {
	cfg := *o.cfg // the defaults, and the flags' values
	if o.configFile != "" {
		loaded, err := agent.LoadConfig(o.configFile)
		if err != nil {
			return nil, err
		}
		flags := cfg
		cfg = *loaded
		f := cmd.Flags()
		for _, field := range configFields {
			if f.Changed(field.name) {
				field.copy(&cfg, &flags)
			}
		}
		if len(o.keys) > 0 {
			cfg.Keys = nil
		}
		if len(o.dropDirs) > 0 {
			var kept []agent.SourceConfig
			for _, s := range cfg.Sources {
				if s.Dir == "" {
					kept = append(kept, s)
				}
			}
			cfg.Sources = kept
		}
	}
	cfg.Keys = append([]agent.KeyConfig(nil), cfg.Keys...)
	for _, k := range o.keys {
		cfg.Keys = append(cfg.Keys, agent.KeyConfig{Path: k})
	}
	cfg.Sources = append([]agent.SourceConfig(nil), cfg.Sources...)
	for _, d := range o.dropDirs {
		cfg.Sources = append(cfg.Sources, agent.SourceConfig{Dir: d})
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &cfg, nil
}
