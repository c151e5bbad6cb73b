package strictyaml_test

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferry-gitops/ferry/internal/strictyaml"
)

type duration struct{ time.Duration }

type retention struct {
	Keep int `json:"keep"`
}

type source struct {
	Dir string `json:"dir,omitempty"`
	S3  *struct {
		Bucket string `json:"bucket"`
	} `json:"s3,omitempty"`
}

type Common struct {
	Labels map[string]retention `json:"labels"`
}

type config struct {
	Common
	Name      string    `json:"name"`
	Retention retention `json:"retention"`
	Sources   []source  `json:"sources"`
	Poll      *duration `json:"poll"`
	Plain     bool
	Dir       string `json:"-"`
	hidden    string
}

var _ = config{hidden: ""} // the unexported field is the point: it is no JSON field

// leaf checks durations: a string Go parses, positive.
func leaf(_ string, v any, t reflect.Type) (string, bool) {
	if t != reflect.TypeFor[duration]() {
		return "", false
	}
	s, ok := v.(string)
	if !ok {
		return fmt.Sprintf("want a duration, got %v", v), true
	}
	if d, err := time.ParseDuration(s); err != nil || d <= 0 {
		return fmt.Sprintf("%q: want a positive duration", s), true
	}
	return "", true
}

func TestCheck(t *testing.T) {
	const known = "known fields here: labels, name, retention, sources, poll, Plain"
	for _, tc := range []struct {
		name    string
		yaml    string
		checker strictyaml.Checker
		want    []string
	}{
		{"all known", "name: a\nretention: {keep: 3}\nsources: [{dir: /d}, {s3: {bucket: b}}]\npoll: 10s\nPlain: true\nlabels: {x: {keep: 1}}\n", strictyaml.Checker{Leaf: leaf, Shapes: true}, nil},
		{"empty document", "", strictyaml.Checker{Shapes: true}, nil},
		{"null sections", "retention: null\nsources: null\npoll: null\n", strictyaml.Checker{Shapes: true}, nil},
		{"unknown top-level field", "name: a\nnmae: b\n", strictyaml.Checker{}, []string{"nmae: unknown field; " + known}},
		{"unknown fields sorted", "zeta: 1\nalpha: 2\n", strictyaml.Checker{}, []string{"alpha: unknown field; " + known, "zeta: unknown field; " + known}},
		{"unknown nested field", "retention: {keep: 3, maxAge: 1h}\n", strictyaml.Checker{}, []string{"retention.maxAge: unknown field; known fields here: keep"}},
		{"unknown field in a list item behind a pointer", "sources: [{dir: /d}, {s3: {bucket: b, region: eu}}]\n", strictyaml.Checker{}, []string{"sources[1].s3.region: unknown field; known fields here: bucket"}},
		{"unknown field in a map value", "labels: {x: {keep: 1, kept: 2}}\n", strictyaml.Checker{}, []string{"labels.x.kept: unknown field; known fields here: keep"}},
		{"a field tagged - is unknown", "Dir: x\n", strictyaml.Checker{}, []string{"Dir: unknown field; " + known}},
		{"an unexported field is unknown", "hidden: x\n", strictyaml.Checker{}, []string{"hidden: unknown field; " + known}},
		{"the embedded struct is not a field", "Common: {}\n", strictyaml.Checker{}, []string{"Common: unknown field; " + known}},
		{"wrong shapes skipped without Shapes", "retention: 3\nsources: {dir: /d}\n", strictyaml.Checker{}, nil},
		{"wrong shapes reported with Shapes", "retention: 3\nsources: {dir: /d}\nlabels: [a]\n", strictyaml.Checker{Shapes: true},
			[]string{"labels: want a mapping, got [a]", "retention: want a mapping, got 3", "sources: want a list, got map[dir:/d]"}},
		{"a document that is not a mapping", "- a\n", strictyaml.Checker{Shapes: true}, []string{"want a mapping, got [a]"}},
		{"leaf problem", "poll: often\n", strictyaml.Checker{Leaf: leaf}, []string{`poll: "often": want a positive duration`}},
		{"leaf wrong type", "poll: 10\n", strictyaml.Checker{Leaf: leaf}, []string{"poll: want a duration, got 10"}},
		{"leaf handles the value: no walk into it", "poll: {Duration: 1, extra: 2}\n", strictyaml.Checker{Leaf: leaf}, []string{"poll: want a duration, got map[Duration:1 extra:2]"}},
		{"without the leaf the walk goes into it", "poll: {Duration: 1, extra: 2}\n", strictyaml.Checker{}, []string{"poll.extra: unknown field; known fields here: Duration"}},
		{"every problem at once", "retention: {keep: 1, x: 1}\npoll: 0s\nsources: [{dir: a, z: 1}]\n", strictyaml.Checker{Leaf: leaf, Shapes: true},
			[]string{`poll: "0s": want a positive duration`, "retention.x: unknown field; known fields here: keep", "sources[0].z: unknown field; known fields here: dir, s3"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, _, err := strictyaml.Decode([]byte(tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			got := tc.checker.Check(v, reflect.TypeFor[config]())
			if !slices.Equal(got, tc.want) {
				t.Fatalf("problems:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
		})
	}
}

// Fields follow encoding/json: an embedded struct's fields are promoted, an outer field wins
// over a promoted one of the same name, and a pointer type is looked through.
func TestCheckFieldNames(t *testing.T) {
	type Inner struct {
		A string `json:"a"`
		B string `json:"b"`
	}
	type outer struct {
		*Inner
		B int    `json:"b"`
		C string `json:"c,omitempty"`
	}
	for _, tc := range []struct {
		name string
		yaml string
		want []string
	}{
		{"promoted and own fields", "a: x\nb: 1\nc: y\n", nil},
		{"unknown", "d: 1\n", []string{"d: unknown field; known fields here: a, b, c"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, _, err := strictyaml.Decode([]byte(tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			if got := (strictyaml.Checker{}).Check(v, reflect.TypeFor[*outer]()); !slices.Equal(got, tc.want) {
				t.Fatalf("problems %q, want %q", got, tc.want)
			}
		})
	}
}

func TestDecode(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, json string
		value            any
		err              string
	}{
		{"mapping", "a: 1\nb: [x, true, null]\n", `{"a":1,"b":["x",true,null]}`, map[string]any{"a": 1.0, "b": []any{"x", true, nil}}, ""},
		{"empty", "", "null", nil, ""},
		{"scalar", "hello", `"hello"`, "hello", ""},
		{"not YAML", "\t: :", "", nil, "yaml:"},
		{"two documents' worth of junk", "a: [1, 2\n", "", nil, "yaml:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, j, err := strictyaml.Decode([]byte(tc.yaml))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one saying %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(j) != tc.json || !reflect.DeepEqual(v, tc.value) {
				t.Fatalf("got %s %#v, want %s %#v", j, v, tc.json, tc.value)
			}
		})
	}
}
