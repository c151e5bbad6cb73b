package gitserve

import (
	"bytes"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
)

// FuzzParseUploadRequest feeds hostile upload-pack request bodies (what any in-cluster client can
// POST) to the parser: it must not panic, and what it accepts holds only well-formed hashes.
func FuzzParseUploadRequest(f *testing.F) {
	want := "0032want 0123456789abcdef0123456789abcdef01234567\n"
	for _, seed := range []string{
		want + "0000" + "0009done\n",
		"0054want 0123456789abcdef0123456789abcdef01234567 ofs-delta side-band-64k\n0000" +
			"0032have 89abcdef0123456789abcdef0123456789abcdef\n0000",
		want + "000cdeepen 1\n0000" + "0009done\n",
		want + "0034shallow 0123456789abcdef0123456789abcdef01234567\n0000",
		"", "0000", "ffff", "0004", want + "0032have zz\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := parseUploadRequest(body)
		if err != nil {
			return
		}
		for _, h := range append(append([]plumbing.Hash(nil), req.Wants...), req.Haves...) {
			if h.IsZero() && !bytes.Contains(body, []byte("0000000000000000000000000000000000000000")) {
				t.Fatalf("a zero hash accepted from %q", body)
			}
		}
	})
}
