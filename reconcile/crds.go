package reconcile

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/ferry-gitops/ferry/api"
)

// InstallCRDs applies the CRDs of the Flux kinds sync reconciles (api.CRDs) with server-side apply
// (field manager "ferry") and waits until the API server has established them.
func InstallCRDs(ctx context.Context, cfg *rest.Config) error {
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	for _, doc := range api.CRDs() {
		if err := installCRD(ctx, c, doc); err != nil {
			return err
		}
	}
	return nil
}

// installCRD applies one CRD and waits until it is established.
func installCRD(ctx context.Context, c client.Client, doc []byte) error {
	crd := &unstructured.Unstructured{}
	if err := yaml.Unmarshal(doc, &crd.Object); err != nil {
		return fmt.Errorf("embedded CRD: %w", err)
	}
	name := crd.GetName()
	if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(crd), client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
		return fmt.Errorf("apply CRD %s: %w", name, err)
	}
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		got := &unstructured.Unstructured{}
		got.SetGroupVersionKind(crd.GroupVersionKind())
		if err := c.Get(ctx, client.ObjectKey{Name: name}, got); err != nil {
			return false, err
		}
		conds, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
		for _, cond := range conds {
			m, _ := cond.(map[string]any)
			if m["type"] == "Established" && m["status"] == "True" {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("CRD %s: wait until established: %w", name, err)
	}
	return nil
}
