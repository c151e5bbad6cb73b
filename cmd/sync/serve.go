package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/cache"
	"github.com/ferry-gitops/ferry/internal/authfile"
	"github.com/ferry-gitops/ferry/serve"
	"github.com/ferry-gitops/ferry/serve/registry"
)

func serveCommand() *cobra.Command {
	var dir, listen, certFile, keyFile, htpasswd, tokenFile, workDir string
	var protect serve.Options
	var gitLimits serve.GitLimits
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the cache's current bundle to the cluster: an OCI registry and a Git remote, read-only",
		Long: `serve answers the OCI Distribution API from the cache: manifests by tag and digest, blobs
(with Range), tag lists, the catalog and the referrers API. Repositories keep their upstream
names (registry.example/team/app), so nodes can use Ferry as a mirror of their upstream
registries: see 'sync registry-config'. Nothing can be pushed.`,
		Example: "  sync serve --cache /var/lib/ferry/cache --listen :5000 --tls-cert tls.crt --tls-key tls.key",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			log := slog.New(slog.NewJSONHandler(cmd.ErrOrStderr(), nil))
			c, err := cache.OpenReader(dir) // serving takes no lock: imports go on beside it
			if err != nil {
				return err
			}
			opts := serve.ServerOptions{Options: protect, TLSCert: certFile, TLSKey: keyFile, GitWorkDir: workDir, GitLimits: gitLimits}
			opts.Logger = log
			creds, err := authfile.Load(htpasswd, tokenFile)
			if err != nil {
				if e := (*authfile.Error)(nil); errors.As(err, &e) && e.File == authfile.BearerTokens {
					return fmt.Errorf("--bearer-tokens: %w", e.Err)
				}
				return fmt.Errorf("--%w", err) // --htpasswd: …
			}
			opts.BasicAuth, opts.BearerTokens = creds.BasicAuth, creds.BearerTokens
			srv, err := serve.NewServer(ctx, c, opts)
			if err != nil {
				return err
			}
			defer srv.Close()
			go srv.Watch(ctx, 2*time.Second) // reloads whenever an import changes the current bundle
			log.Info("sync serve listening", "addr", listen, "repositories", len(srv.Repositories()), "tls", certFile != "")
			return srv.ListenAndServe(ctx, listen)
		},
	}
	addCacheFlag(cmd, &dir)
	cmd.Flags().StringVar(&listen, "listen", ":5000", "address to listen on")
	cmd.Flags().StringVar(&certFile, "tls-cert", "", "TLS certificate file (PEM); plain HTTP without it")
	cmd.Flags().StringVar(&keyFile, "tls-key", "", "TLS private key file (PEM)")
	cmd.Flags().StringVar(&workDir, "work-dir", "", "where Git repositories are built from cached packs, in a private folder of this process removed when it ends (default: the system's temporary directory)")
	cmd.Flags().StringVar(&htpasswd, "htpasswd", "", "require basic authentication against this htpasswd file (bcrypt entries, htpasswd -B)")
	cmd.Flags().StringVar(&tokenFile, "bearer-tokens", "", "accept the bearer tokens in this file (one per line)")
	cmd.Flags().Float64Var(&protect.RatePerSecond, "rate-limit", 0, "requests per second allowed to each client (0: unlimited)")
	cmd.Flags().IntVar(&protect.Burst, "burst", 100, "requests a client may make at once above the rate")
	cmd.Flags().IntVar(&gitLimits.MaxConcurrent, "git-max-concurrent", 8, "Git requests served at once over all repositories")
	cmd.Flags().IntVar(&gitLimits.MaxPerRepository, "git-max-per-repository", 2, "Git requests served at once for one repository")
	cmd.Flags().DurationVar(&gitLimits.RequestTimeout, "git-request-timeout", 2*time.Minute, "deadline of a Git request, from its turn to its last byte")
	cmd.Flags().IntVar(&gitLimits.MaxObjects, "git-max-objects", 200000, "objects a Git fetch may make the server walk or pack (a whole clone costs none)")
	cmd.Flags().Int64Var(&gitLimits.MaxPackBytes, "git-max-pack-bytes", 512<<20, "bytes of objects a Git fetch may have packed for it (a whole clone is sent as stored)")
	cmd.Flags().BoolVar(&protect.ProtectHealth, "protect-health", false, "require the same authentication on /healthz and /readyz (probes then need credentials)")
	return cmd
}

func registryConfigCommand() *cobra.Command {
	var dir, endpoint string
	cmd := &cobra.Command{
		Use:   "registry-config",
		Short: "Print containerd hosts.toml files that make nodes pull through Ferry",
		Long: `registry-config prints, for every upstream registry of the current bundle's images, the containerd
hosts.toml (for /etc/containerd/certs.d/<registry>/hosts.toml) that sends pulls to Ferry's
registry, and the CRI-O registries.conf mirror entries that do the same. A registry's port is written "-PORT" in
Ferry's repository names (repository names cannot hold a colon).`,
		Example: "  sync registry-config --endpoint https://ferry.ferry-system.svc:5000",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cache.OpenReader(dir)
			if err != nil {
				return err
			}
			rec, err := c.Current()
			if err != nil {
				return err
			}
			if rec == nil {
				return fmt.Errorf("cache %s holds no bundle yet: import one first", dir)
			}
			// Only images are pulled by nodes: charts and Git sources are served too, but their
			// hosts need no mirror entry.
			hosts := map[string]bool{}
			for _, it := range rec.Items {
				if it.Kind != bundle.KindImage {
					continue
				}
				repo, _ := registry.RepositoryName(bundle.Item{Name: it.Name, Kind: it.Kind, Source: it.Source, Revision: it.Revision})
				if h, _, ok := strings.Cut(repo, "/"); ok && strings.ContainsAny(h, ".-") {
					hosts[h] = true
				}
			}
			var names []string
			for h := range hosts {
				names = append(names, h)
			}
			sort.Strings(names)
			out := cmd.OutOrStdout()
			ep := strings.TrimSuffix(endpoint, "/")
			for _, h := range names {
				up := upstreamHost(h)
				fmt.Fprintf(out, "# /etc/containerd/certs.d/%s/hosts.toml\nserver = \"https://%s\"\n\n[host.\"%s/v2/%s\"]\n  capabilities = [\"pull\", \"resolve\"]\n  override_path = true\n\n", up, up, ep, h)
			}
			fmt.Fprintln(out, "# CRI-O: /etc/containers/registries.conf.d/ferry.conf")
			for _, h := range names {
				fmt.Fprintf(out, "[[registry]]\nprefix = \"%s\"\nlocation = \"%s\"\n[[registry.mirror]]\nlocation = \"%s/%s\"\n\n", upstreamHost(h), upstreamHost(h), strings.TrimPrefix(strings.TrimPrefix(ep, "https://"), "http://"), h)
			}
			return nil
		},
	}
	addCacheFlag(cmd, &dir)
	cmd.Flags().StringVar(&endpoint, "endpoint", "https://ferry.ferry-system.svc:5000", "Ferry's registry as nodes reach it")
	return cmd
}

// upstreamHost turns a repository name's host back into the registry's: "-PORT" is ":PORT".
func upstreamHost(h string) string {
	if i := strings.LastIndex(h, "-"); i > 0 {
		if _, err := strconv.Atoi(h[i+1:]); err == nil {
			return h[:i] + ":" + h[i+1:]
		}
	}
	return h
}
