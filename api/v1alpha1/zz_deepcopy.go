package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// DeepCopyInto copies k into out.
func (k *Kustomization) DeepCopyInto(out *Kustomization) {
	*out = *k
	out.TypeMeta = k.TypeMeta
	k.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	k.Spec.DeepCopyInto(&out.Spec)
	k.Status.DeepCopyInto(&out.Status)
}

// DeepCopy returns a copy of k.
func (k *Kustomization) DeepCopy() *Kustomization {
	if k == nil {
		return nil
	}
	out := new(Kustomization)
	k.DeepCopyInto(out)
	return out
}

// DeepCopyObject implements runtime.Object.
func (k *Kustomization) DeepCopyObject() runtime.Object {
	if c := k.DeepCopy(); c != nil {
		return c
	}
	return nil
}

// DeepCopyInto copies s into out.
func (s *KustomizationSpec) DeepCopyInto(out *KustomizationSpec) {
	*out = *s
	if s.DependsOn != nil {
		out.DependsOn = make([]DependencyReference, len(s.DependsOn))
		copy(out.DependsOn, s.DependsOn)
	}
	if s.Timeout != nil {
		t := *s.Timeout
		out.Timeout = &t
	}
	if s.Images != nil {
		out.Images = make([]Image, len(s.Images))
		copy(out.Images, s.Images)
	}
	if s.PostBuild != nil {
		out.PostBuild = s.PostBuild.DeepCopy()
	}
	if s.HealthChecks != nil {
		out.HealthChecks = make([]HealthCheckReference, len(s.HealthChecks))
		copy(out.HealthChecks, s.HealthChecks)
	}
}

// DeepCopyInto copies p into out.
func (p *PostBuild) DeepCopyInto(out *PostBuild) {
	*out = *p
	if p.Substitute != nil {
		out.Substitute = make(map[string]string, len(p.Substitute))
		for k, v := range p.Substitute {
			out.Substitute[k] = v
		}
	}
	if p.SubstituteFrom != nil {
		out.SubstituteFrom = make([]SubstituteReference, len(p.SubstituteFrom))
		copy(out.SubstituteFrom, p.SubstituteFrom)
	}
}

// DeepCopy returns a copy of p.
func (p *PostBuild) DeepCopy() *PostBuild {
	if p == nil {
		return nil
	}
	out := new(PostBuild)
	p.DeepCopyInto(out)
	return out
}

// DeepCopy returns a copy of s.
func (s *KustomizationSpec) DeepCopy() *KustomizationSpec {
	if s == nil {
		return nil
	}
	out := new(KustomizationSpec)
	s.DeepCopyInto(out)
	return out
}

// DeepCopyInto copies s into out.
func (s *KustomizationStatus) DeepCopyInto(out *KustomizationStatus) {
	*out = *s
	if s.Conditions != nil {
		out.Conditions = make([]metav1.Condition, len(s.Conditions))
		for i := range s.Conditions {
			s.Conditions[i].DeepCopyInto(&out.Conditions[i])
		}
	}
	if s.Inventory != nil {
		out.Inventory = s.Inventory.DeepCopy()
	}
}

// DeepCopy returns a copy of s.
func (s *KustomizationStatus) DeepCopy() *KustomizationStatus {
	if s == nil {
		return nil
	}
	out := new(KustomizationStatus)
	s.DeepCopyInto(out)
	return out
}

// DeepCopyInto copies i into out.
func (i *ResourceInventory) DeepCopyInto(out *ResourceInventory) {
	*out = *i
	if i.Entries != nil {
		out.Entries = make([]ResourceRef, len(i.Entries))
		copy(out.Entries, i.Entries)
	}
}

// DeepCopy returns a copy of i.
func (i *ResourceInventory) DeepCopy() *ResourceInventory {
	if i == nil {
		return nil
	}
	out := new(ResourceInventory)
	i.DeepCopyInto(out)
	return out
}

// DeepCopyInto copies l into out.
func (l *KustomizationList) DeepCopyInto(out *KustomizationList) {
	*out = *l
	out.TypeMeta = l.TypeMeta
	l.ListMeta.DeepCopyInto(&out.ListMeta)
	if l.Items != nil {
		out.Items = make([]Kustomization, len(l.Items))
		for i := range l.Items {
			l.Items[i].DeepCopyInto(&out.Items[i])
		}
	}
}

// DeepCopy returns a copy of l.
func (l *KustomizationList) DeepCopy() *KustomizationList {
	if l == nil {
		return nil
	}
	out := new(KustomizationList)
	l.DeepCopyInto(out)
	return out
}

// DeepCopyObject implements runtime.Object.
func (l *KustomizationList) DeepCopyObject() runtime.Object {
	if c := l.DeepCopy(); c != nil {
		return c
	}
	return nil
}
