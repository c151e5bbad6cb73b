package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// DeepCopyInto copies h into out.
func (h *HelmRelease) DeepCopyInto(out *HelmRelease) {
	*out = *h
	out.TypeMeta = h.TypeMeta
	h.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	h.Spec.DeepCopyInto(&out.Spec)
	h.Status.DeepCopyInto(&out.Status)
}

// DeepCopy returns a copy of h.
func (h *HelmRelease) DeepCopy() *HelmRelease {
	if h == nil {
		return nil
	}
	out := new(HelmRelease)
	h.DeepCopyInto(out)
	return out
}

// DeepCopyObject implements runtime.Object.
func (h *HelmRelease) DeepCopyObject() runtime.Object {
	if c := h.DeepCopy(); c != nil {
		return c
	}
	return nil
}

// DeepCopyInto copies s into out.
func (s *HelmReleaseSpec) DeepCopyInto(out *HelmReleaseSpec) {
	*out = *s
	if s.Values != nil {
		out.Values = s.Values.DeepCopy()
	}
	if s.ValuesFrom != nil {
		out.ValuesFrom = make([]ValuesReference, len(s.ValuesFrom))
		copy(out.ValuesFrom, s.ValuesFrom)
	}
	if s.DependsOn != nil {
		out.DependsOn = make([]DependencyReference, len(s.DependsOn))
		copy(out.DependsOn, s.DependsOn)
	}
	if s.Install != nil {
		in := *s.Install
		if in.Remediation != nil {
			r := *in.Remediation
			in.Remediation = &r
		}
		out.Install = &in
	}
	if s.Upgrade != nil {
		up := *s.Upgrade
		if up.Remediation != nil {
			r := *up.Remediation
			if r.RemediateLastFailure != nil {
				b := *r.RemediateLastFailure
				r.RemediateLastFailure = &b
			}
			up.Remediation = &r
		}
		out.Upgrade = &up
	}
	if s.Rollback != nil {
		rb := *s.Rollback
		if rb.Timeout != nil {
			t := *rb.Timeout
			rb.Timeout = &t
		}
		out.Rollback = &rb
	}
	if s.Timeout != nil {
		t := *s.Timeout
		out.Timeout = &t
	}
	if s.Uninstall != nil {
		un := *s.Uninstall
		if un.Timeout != nil {
			t := *un.Timeout
			un.Timeout = &t
		}
		out.Uninstall = &un
	}
	if s.Test != nil {
		te := *s.Test
		if te.Timeout != nil {
			t := *te.Timeout
			te.Timeout = &t
		}
		out.Test = &te
	}
	if s.DriftDetection != nil {
		d := *s.DriftDetection
		out.DriftDetection = &d
	}
}

// DeepCopy returns a copy of s.
func (s *HelmReleaseSpec) DeepCopy() *HelmReleaseSpec {
	if s == nil {
		return nil
	}
	out := new(HelmReleaseSpec)
	s.DeepCopyInto(out)
	return out
}

// DeepCopyInto copies s into out.
func (s *HelmReleaseStatus) DeepCopyInto(out *HelmReleaseStatus) {
	*out = *s
	if s.Conditions != nil {
		out.Conditions = make([]metav1.Condition, len(s.Conditions))
		for i := range s.Conditions {
			s.Conditions[i].DeepCopyInto(&out.Conditions[i])
		}
	}
	if s.History != nil {
		out.History = make([]HelmReleaseSnapshot, len(s.History))
		copy(out.History, s.History)
	}
}

// DeepCopy returns a copy of s.
func (s *HelmReleaseStatus) DeepCopy() *HelmReleaseStatus {
	if s == nil {
		return nil
	}
	out := new(HelmReleaseStatus)
	s.DeepCopyInto(out)
	return out
}

// DeepCopyInto copies l into out.
func (l *HelmReleaseList) DeepCopyInto(out *HelmReleaseList) {
	*out = *l
	out.TypeMeta = l.TypeMeta
	l.ListMeta.DeepCopyInto(&out.ListMeta)
	if l.Items != nil {
		out.Items = make([]HelmRelease, len(l.Items))
		for i := range l.Items {
			l.Items[i].DeepCopyInto(&out.Items[i])
		}
	}
}

// DeepCopy returns a copy of l.
func (l *HelmReleaseList) DeepCopy() *HelmReleaseList {
	if l == nil {
		return nil
	}
	out := new(HelmReleaseList)
	l.DeepCopyInto(out)
	return out
}

// DeepCopyObject implements runtime.Object.
func (l *HelmReleaseList) DeepCopyObject() runtime.Object {
	if c := l.DeepCopy(); c != nil {
		return c
	}
	return nil
}
