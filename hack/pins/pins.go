//go:build pins

// Package pins is never built. Its imports keep every library Ferry is designed around
// in go.mod at the versions that compile together (see docs/development.md),
// even before code imports them, so that `go mod tidy` cannot drop or move them.
package pins

import (
	_ "github.com/fluxcd/pkg/ssa"
	_ "github.com/go-git/go-git/v5"
	_ "github.com/google/cel-go/cel"
	_ "github.com/google/go-containerregistry/pkg/v1/remote"
	_ "github.com/minio/minio-go/v7"
	_ "github.com/sigstore/cosign/v2/pkg/cosign"
	_ "github.com/sigstore/sigstore-go/pkg/verify"
	_ "github.com/spf13/cobra"
	_ "helm.sh/helm/v4/pkg/action"
	_ "k8s.io/client-go/kubernetes"
	_ "oras.land/oras-go/v2"
	_ "sigs.k8s.io/controller-runtime/pkg/client"
	_ "sigs.k8s.io/kustomize/api/krusty"
)
