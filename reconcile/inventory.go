package reconcile

import (
	"fmt"
	"sort"

	"github.com/fluxcd/cli-utils/pkg/object"
	kustomizev1 "github.com/fluxcd/kustomize-controller/api/v1"
	"github.com/fluxcd/pkg/ssa"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Inventories: what an apply returned, as a Kustomization's status and the bundle-object
// inventory ConfigMap record it, and what pruning deletes.

// inventoryOf lists a change set's objects as inventory entries, sorted by id.
func inventoryOf(cs *ssa.ChangeSet) *kustomizev1.ResourceInventory {
	inv := &kustomizev1.ResourceInventory{Entries: []kustomizev1.ResourceRef{}}
	if cs == nil {
		return inv
	}
	for _, e := range cs.Entries {
		inv.Entries = append(inv.Entries, kustomizev1.ResourceRef{ID: e.ObjMetadata.String(), Version: e.GroupVersion})
	}
	sort.Slice(inv.Entries, func(i, j int) bool { return inv.Entries[i].ID < inv.Entries[j].ID })
	return inv
}

// mergeInventories returns the union of two inventories; b's version wins.
func mergeInventories(a, b *kustomizev1.ResourceInventory) *kustomizev1.ResourceInventory {
	byID := map[string]string{}
	if a != nil {
		for _, e := range a.Entries {
			byID[e.ID] = e.Version
		}
	}
	for _, e := range b.Entries {
		byID[e.ID] = e.Version
	}
	out := &kustomizev1.ResourceInventory{Entries: []kustomizev1.ResourceRef{}}
	for id, v := range byID {
		out.Entries = append(out.Entries, kustomizev1.ResourceRef{ID: id, Version: v})
	}
	sort.Slice(out.Entries, func(i, j int) bool { return out.Entries[i].ID < out.Entries[j].ID })
	return out
}

// staleObjects returns the objects of old that current lacks, as objects to delete.
func staleObjects(old, current *kustomizev1.ResourceInventory) ([]*unstructured.Unstructured, error) {
	if old == nil {
		return nil, nil
	}
	keep := map[string]bool{}
	for _, e := range current.Entries {
		keep[e.ID] = true
	}
	var out []*unstructured.Unstructured
	for _, e := range old.Entries {
		if keep[e.ID] {
			continue
		}
		m, err := object.ParseObjMetadata(e.ID)
		if err != nil {
			return nil, fmt.Errorf("inventory entry %q: %w", e.ID, err)
		}
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(m.GroupKind.WithVersion(e.Version))
		u.SetNamespace(m.Namespace)
		u.SetName(m.Name)
		out = append(out, u)
	}
	return out, nil
}

// changeCounts counts the objects an apply created and those it configured (changed).
func changeCounts(cs *ssa.ChangeSet) (created, configured int) {
	for _, e := range cs.Entries {
		switch e.Action {
		case ssa.CreatedAction:
			created++
		case ssa.ConfiguredAction:
			configured++
		}
	}
	return created, configured
}
