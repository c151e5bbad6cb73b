package main

import (
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ferry-gitops/ferry/agent"
	"github.com/ferry-gitops/ferry/reconcile"
)

func reconcileCommand() *cobra.Command {
	var dir, kubeconfig string
	var installCRDs bool
	var concurrent int
	var tenancy agent.TenancyConfig
	cmd := &cobra.Command{
		Use:   "reconcile",
		Short: "Reconcile the cluster's Kustomizations and HelmReleases once, from the cache",
		Long: `reconcile runs one pass over every Ferry Kustomization and HelmRelease in the cluster, each
after its dependencies, from the cache's current bundle: kustomize builds applied server-side,
pruned and corrected; Helm releases installed, upgraded or rolled back. Each object's status
says how it went. It reaches nothing but the cluster's API server.

It uses the in-cluster credentials, or --kubeconfig.`,
		Example: "  sync reconcile --cache /var/lib/ferry/cache --install-crds",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := restConfig(kubeconfig)
			if err != nil {
				return err
			}
			if installCRDs {
				if err := reconcile.InstallCRDs(cmd.Context(), cfg); err != nil {
					return err
				}
			}
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			if concurrent < 0 {
				return fmt.Errorf("--concurrent %d: want 1 or more (0: %d)", concurrent, reconcile.DefaultConcurrent)
			}
			r, err := reconcile.New(cfg, dir, reconcile.Options{Logger: log, Concurrent: concurrent, Tenancy: tenancy.Reconcile()})
			if err != nil {
				return err
			}
			defer r.Close() // stops the event sender
			return r.ReconcileAllForce(cmd.Context())
		},
	}
	addCacheFlag(cmd, &dir)
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file (default: in-cluster credentials)")
	cmd.Flags().BoolVar(&installCRDs, "install-crds", false, "install or update the Flux CRDs (Kustomization, HelmRelease, the sources) first")
	cmd.Flags().BoolVar(&tenancy.MultiTenant, "multi-tenant", false, "lock the cluster down for tenants: objects naming no ServiceAccount run as their namespace's default one, no references across namespaces, no Helm hooks for tenants (docs/tenancy.md)")
	cmd.Flags().StringVar(&tenancy.DefaultServiceAccount, "default-service-account", "", "with --multi-tenant, the ServiceAccount objects naming none run as (default: default)")
	cmd.Flags().IntVar(&concurrent, "concurrent", 0, "Kustomizations and HelmReleases worked on at once, each after its dependsOn (0: 4)")
	return cmd
}

// restConfig reads a kubeconfig file, or the in-cluster credentials without one.
func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		cfg, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("no --kubeconfig and not in a cluster: %w", err)
		}
		return cfg, nil
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	return cfg, nil
}
