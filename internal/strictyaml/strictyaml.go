package strictyaml

import (
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"
)

// Decode converts YAML to JSON and returns the generic value it holds (map[string]any, []any,
// string, float64, bool or nil) along with the JSON, which the caller decodes into its type. The
// error is the YAML or JSON parser's, unwrapped.
func Decode(data []byte) (v any, jsonData []byte, err error) {
	jsonData, err = yaml.YAMLToJSON(data)
	if err != nil {
		return nil, nil, err
	}
	if err := json.Unmarshal(jsonData, &v); err != nil {
		return nil, nil, err
	}
	return v, jsonData, nil
}

// Leaf checks a value whose type it knows better than the walk does. The walk offers it every
// value, with t stripped of pointers, before looking at the value itself. handled says the value
// is the hook's: the walk goes no deeper, and reports problem (when not empty) at path.
type Leaf func(path string, v any, t reflect.Type) (problem string, handled bool)

// Checker walks a decoded document (see Decode) beside a Go type.
type Checker struct {
	// Leaf, when set, is offered every value first (see Leaf).
	Leaf Leaf
	// Shapes reports a value that is not a mapping where the type is a struct or a map ("want a
	// mapping, got …") and one that is not a list where it is a slice ("want a list, got …");
	// null is accepted. Without it, such values are skipped and left to the JSON decoder.
	Shapes bool
}

// Check returns every problem of v as a value of type t, each "path: problem", in a stable
// order: a mapping's keys sorted, a list's items in order. A path is the JSON field names joined
// with dots, list indexes in brackets: "sources[1].s3.region".
func (c Checker) Check(v any, t reflect.Type) []string {
	var problems []string
	c.walk("", v, t, &problems)
	return problems
}

func (c Checker) walk(path string, v any, t reflect.Type, problems *[]string) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	add := func(problem string) {
		if path != "" {
			problem = path + ": " + problem
		}
		*problems = append(*problems, problem)
	}
	if c.Leaf != nil {
		if problem, handled := c.Leaf(path, v, t); handled {
			if problem != "" {
				add(problem)
			}
			return
		}
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			if c.Shapes && v != nil {
				add(fmt.Sprintf("want a mapping, got %v", v))
			}
			return
		}
		if t.Kind() == reflect.Map {
			for _, k := range slices.Sorted(maps.Keys(m)) {
				c.walk(join(path, k), m[k], t.Elem(), problems)
			}
			return
		}
		types, names := fields(t)
		for _, k := range slices.Sorted(maps.Keys(m)) {
			ft, ok := types[k]
			if !ok {
				*problems = append(*problems, fmt.Sprintf("%s: unknown field; known fields here: %s", join(path, k), strings.Join(names, ", ")))
				continue
			}
			c.walk(join(path, k), m[k], ft, problems)
		}
	case reflect.Slice, reflect.Array:
		s, ok := v.([]any)
		if !ok {
			if c.Shapes && v != nil {
				add(fmt.Sprintf("want a list, got %v", v))
			}
			return
		}
		for i, e := range s {
			c.walk(fmt.Sprintf("%s[%d]", path, i), e, t.Elem(), problems)
		}
	}
}

// fields returns the JSON names of struct type t's fields, with their types, and the names in
// declaration order. Like encoding/json, it takes a field's name from its json tag or else the
// Go name, skips unexported fields and those tagged "-", and promotes the fields of an embedded
// struct without a tag name (a field of the outer struct wins over a promoted one).
func fields(t reflect.Type) (map[string]reflect.Type, []string) {
	types := map[string]reflect.Type{}
	var names []string
	var collect func(t reflect.Type, depth int, seen map[reflect.Type]bool)
	depthOf := map[string]int{}
	collect = func(t reflect.Type, depth int, seen map[reflect.Type]bool) {
		if seen[t] {
			return // an embedding cycle through pointers
		}
		seen[t] = true
		defer delete(seen, t)
		for i := range t.NumField() {
			f := t.Field(i)
			tag := f.Tag.Get("json")
			if tag == "-" {
				continue
			}
			name, _, _ := strings.Cut(tag, ",")
			if f.Anonymous && name == "" {
				et := f.Type
				if et.Kind() == reflect.Pointer {
					et = et.Elem()
				}
				if et.Kind() == reflect.Struct {
					collect(et, depth+1, seen)
					continue
				}
			}
			if !f.IsExported() {
				continue
			}
			if name == "" {
				name = f.Name
			}
			if d, dup := depthOf[name]; dup {
				if depth < d {
					types[name], depthOf[name] = f.Type, depth
				}
				continue
			}
			types[name], depthOf[name] = f.Type, depth
			names = append(names, name)
		}
	}
	collect(t, 0, map[reflect.Type]bool{})
	return types, names
}

func join(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}
