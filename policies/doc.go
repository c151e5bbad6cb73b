// Package policies holds Ferry's declarative rules, written in CEL and checked when a bundle
// is imported and before anything is applied, together with the default policy set.
package policies
