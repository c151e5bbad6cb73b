package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// GetConditions and SetConditions make Kustomization and HelmRelease a conditions.Getter and
// conditions.Setter of github.com/fluxcd/pkg/runtime/conditions, as Flux's own kinds are; the
// reconciler sets Ready, Reconciling and Stalled through them. They are written by hand: these
// kinds are to be replaced by Flux's API types, which carry the same two methods.

// GetConditions returns the Kustomization's status conditions.
func (in *Kustomization) GetConditions() []metav1.Condition { return in.Status.Conditions }

// SetConditions replaces the Kustomization's status conditions.
func (in *Kustomization) SetConditions(c []metav1.Condition) { in.Status.Conditions = c }

// GetConditions returns the HelmRelease's status conditions.
func (in *HelmRelease) GetConditions() []metav1.Condition { return in.Status.Conditions }

// SetConditions replaces the HelmRelease's status conditions.
func (in *HelmRelease) SetConditions(c []metav1.Condition) { in.Status.Conditions = c }
