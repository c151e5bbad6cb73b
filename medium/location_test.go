package medium_test

import (
	"strings"
	"testing"

	"github.com/ferry-gitops/ferry/medium"
)

// Parse reads the grammar the commands take, and a location names itself as it was written.
func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in     string
		kind   medium.Kind
		name   string // Location.Name
		str    string // Location.String; "" is the input
		errHas string
	}{
		{in: "bundle", kind: medium.KindLayout, name: "bundle"},
		{in: "/media/usb/bundle.tar", kind: medium.KindTar, name: "bundle.tar"},
		{in: "/media/usb/bundle.tar.parts.json", kind: medium.KindParts, name: "bundle.tar.parts.json"},
		{in: "s3://drop/site/a/bundle-1.tar.parts.json", kind: medium.KindS3, name: "bundle-1.tar.parts.json"},
		{in: "s3://drop/bundle-1.tar.parts.json", kind: medium.KindS3, name: "bundle-1.tar.parts.json"},
		{in: "s3://drop/site", kind: medium.KindS3Prefix},
		{in: "s3://drop/site/", kind: medium.KindS3Prefix, str: "s3://drop/site"},
		{in: "oci://registry.example:5000/ferry/bundles:edge-1", kind: medium.KindRegistry, name: "edge-1"},
		{in: "oci://registry.example:5000/ferry/bundles", kind: medium.KindRepository},
		{in: "s3:///no-bucket.parts.json", errHas: "want s3://bucket/prefix/NAME.parts.json"},
		{in: "oci://not a reference", errHas: "want oci://host/repository:tag"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			loc, err := medium.Parse(tc.in)
			if tc.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("Parse(%q) = %v, %v; want an error saying %q", tc.in, loc, err, tc.errHas)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := tc.str
			if want == "" {
				want = tc.in
			}
			if loc.Kind() != tc.kind || loc.String() != want || (tc.name != "" && loc.Name() != tc.name) {
				t.Fatalf("Parse(%q) = %s %q named %q; want %s %q named %q", tc.in, loc.Kind(), loc, loc.Name(), tc.kind, want, tc.name)
			}
		})
	}
}
