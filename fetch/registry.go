package fetch

import (
	"fmt"
	"net/http"

	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/credentials"
	"oras.land/oras-go/v2/registry/remote/retry"
)

// repository opens an upstream repository ("host/path") with credentials from Docker's
// config (~/.docker/config.json and its helpers), over plain HTTP for hosts o lists.
func repository(ref string, o *Options) (*remote.Repository, error) {
	repo, err := remote.NewRepository(ref)
	if err != nil {
		return nil, err
	}
	repo.PlainHTTP = o.plainHTTP(repo.Reference.Registry)
	limitRepository(repo)
	client := &auth.Client{Client: &http.Client{Transport: retry.NewTransport(upstreamTransport())}, Cache: auth.NewCache()}
	store, err := credentials.NewStoreFromDocker(credentials.StoreOptions{})
	if err != nil {
		return nil, fmt.Errorf("read Docker credentials: %w", err)
	}
	client.Credential = credentials.Credential(store)
	repo.Client = client
	return repo, nil
}
