// Package strictyaml checks a YAML document strictly against the Go type it decodes into.
//
// Decode turns YAML into the generic value encoding/json produces (map[string]any, []any,
// string, float64, bool, nil) and its JSON. A Checker walks that value beside a Go type,
// following the type's JSON field names, and returns every problem with its path: keys the type
// does not have ("retention.maxAge: unknown field; known fields here: keep"), and whatever its
// Leaf hook finds wrong with values of the types it checks itself (durations, sizes, times).
// The JSON decoder still decodes the document and reports type errors; the walk only adds what
// the decoder would silently accept or report without a path.
package strictyaml
