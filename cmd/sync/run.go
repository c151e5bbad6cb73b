package main

import (
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/klog/v2"

	"github.com/ferry-gitops/ferry/agent"
)

// runFlags are the flags of `sync run`: cfg holds the values of the flags that set one field.
type runFlags struct {
	configFile string
	cfg        *agent.Config
	keys       []string
	dropDirs   []string
	poll       time.Duration
	reconcile  time.Duration
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
			a, err := agent.New(*cfg, agent.Options{Logger: log})
			if err != nil {
				return err
			}
			return a.Run(ctx)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.configFile, "config", "", "configuration file (kind: SyncConfig; see docs/agent.md)")
	f.StringVar(&cfg.Cache, "cache", cfg.Cache, "the cache directory")
	f.StringVar(&cfg.Kubeconfig, "kubeconfig", "", "kubeconfig file (default: in-cluster credentials)")
	f.StringSliceVar(&o.keys, "key", nil, "public key (cosign.pub) bundles must be signed by; repeat for several (replaces the file's keys)")
	f.StringSliceVar(&o.dropDirs, "drop-dir", nil, "drop directory to watch for bundles; repeat for several (replaces the file's dir sources)")
	f.IntVar(&cfg.Threshold, "threshold", cfg.Threshold, "how many of the keys must have signed")
	f.BoolVar(&cfg.AllowGaps, "allow-gaps", false, "accept a bundle whose previous bundle is not the current one (sequence must still grow)")
	f.IntVar(&cfg.Retention.Keep, "keep", cfg.Retention.Keep, "how many of the latest bundles the cache keeps after each import")
	f.DurationVar(&o.poll, "poll-interval", cfg.Intervals.Poll.Duration, "how often the sources are listed")
	f.DurationVar(&o.reconcile, "reconcile-interval", cfg.Intervals.Reconcile.Duration, "how often the cluster is reconciled, besides after each import")
	f.StringVar(&cfg.Serve.Listen, "listen", cfg.Serve.Listen, "address the registry and Git remote listen on")
	f.StringVar(&cfg.Serve.TLSCert, "tls-cert", "", "TLS certificate file (PEM) of the registry and Git remote; plain HTTP without it")
	f.StringVar(&cfg.Serve.TLSKey, "tls-key", "", "TLS private key file (PEM)")
	f.StringVar(&cfg.Serve.GitWorkDir, "git-work-dir", "", "where Git repositories are built from cached packs (derived data)")
	f.StringVar(&cfg.Serve.HTPasswd, "htpasswd", "", "require basic authentication of the registry and Git remote against this htpasswd file (bcrypt entries)")
	f.StringVar(&cfg.Serve.BearerTokens, "bearer-tokens", "", "accept the bearer tokens in this file (one per line)")
	f.Float64Var(&cfg.Serve.RateLimit, "rate-limit", 0, "requests per second allowed to each client of the registry and Git remote (0: unlimited)")
	f.IntVar(&cfg.Serve.Burst, "burst", cfg.Serve.Burst, "requests a client may make at once above the rate")
	f.StringVar(&cfg.Health.Listen, "health-listen", cfg.Health.Listen, "address /healthz, /readyz and /metrics listen on")
	f.BoolVar(&cfg.LeaderElection.Enabled, "leader-elect", false, "elect a leader with a Lease, so that several replicas are safe")
	f.BoolVar(&cfg.InstallCRDs, "install-crds", false, "install or update Ferry's CRDs before the first reconciliation")
	return cmd, o
}

// config is the agent's configuration: the file (--config) if given, with the flags given on
// the command line overriding it, or the flags alone. --key and --drop-dir replace the file's
// keys and dir sources (its S3 and registry sources stay).
func (o *runFlags) config(cmd *cobra.Command) (*agent.Config, error) {
	cfg := *o.cfg // the defaults, and the flags' values
	cfg.Intervals.Poll.Duration, cfg.Intervals.Reconcile.Duration = o.poll, o.reconcile
	if o.configFile != "" {
		loaded, err := agent.LoadConfig(o.configFile)
		if err != nil {
			return nil, err
		}
		flags := cfg
		cfg = *loaded
		f := cmd.Flags()
		for name, apply := range map[string]func(){
			"cache":              func() { cfg.Cache = flags.Cache },
			"kubeconfig":         func() { cfg.Kubeconfig = flags.Kubeconfig },
			"listen":             func() { cfg.Serve.Listen = flags.Serve.Listen },
			"health-listen":      func() { cfg.Health.Listen = flags.Health.Listen },
			"leader-elect":       func() { cfg.LeaderElection.Enabled = flags.LeaderElection.Enabled },
			"install-crds":       func() { cfg.InstallCRDs = flags.InstallCRDs },
			"threshold":          func() { cfg.Threshold = flags.Threshold },
			"allow-gaps":         func() { cfg.AllowGaps = flags.AllowGaps },
			"keep":               func() { cfg.Retention.Keep = flags.Retention.Keep },
			"git-work-dir":       func() { cfg.Serve.GitWorkDir = flags.Serve.GitWorkDir },
			"tls-cert":           func() { cfg.Serve.TLSCert = flags.Serve.TLSCert },
			"tls-key":            func() { cfg.Serve.TLSKey = flags.Serve.TLSKey },
			"htpasswd":           func() { cfg.Serve.HTPasswd = flags.Serve.HTPasswd },
			"bearer-tokens":      func() { cfg.Serve.BearerTokens = flags.Serve.BearerTokens },
			"rate-limit":         func() { cfg.Serve.RateLimit = flags.Serve.RateLimit },
			"burst":              func() { cfg.Serve.Burst = flags.Serve.Burst },
			"poll-interval":      func() { cfg.Intervals.Poll = flags.Intervals.Poll },
			"reconcile-interval": func() { cfg.Intervals.Reconcile = flags.Intervals.Reconcile },
		} {
			if f.Changed(name) {
				apply()
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
