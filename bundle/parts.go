package bundle

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/opencontainers/go-digest"
)

// PartsFormat is the format of a v1 part list.
const PartsFormat = "ferry-parts/v1"

// PartList says how the parts of a split tar go back together.
type PartList struct {
	Format string `json:"format"`
	// Size and Digest are the whole tar's.
	Size     int64         `json:"size"`
	Digest   digest.Digest `json:"digest"`
	PartSize int64         `json:"partSize"`
	Parts    []Part        `json:"parts"`
}

// Part is one piece of a split tar.
type Part struct {
	Name   string        `json:"name"`
	Size   int64         `json:"size"`
	Digest digest.Digest `json:"digest"`
}

// PartListName returns the name of the part list of a tar named name.
func PartListName(name string) string { return name + ".parts.json" }

// PartName returns the name of the i-th part (from 1) of a tar named name.
func PartName(name string, i int) string { return fmt.Sprintf("%s.part-%05d", name, i) }

var partNameRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,255}$`)

// ValidPartName reports whether name is a plain file name a part list may use.
func ValidPartName(name string) bool {
	return partNameRE.MatchString(name) && name != "." && name != ".." && !strings.Contains(name, "..")
}

// Marshal encodes the part list as Split writes it: indented by two spaces, ending in a newline.
func (l *PartList) Marshal() ([]byte, error) {
	data, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}

// Split reads a tar from r and writes it into dir as parts of partSize bytes named after name,
// then the part list (last, so a folder with a part list has every part). It returns the list.
func Split(ctx context.Context, r io.Reader, dir, name string, partSize int64) (*PartList, error) {
	if partSize <= 0 {
		return nil, fmt.Errorf("split %s: part size %d must be positive", name, partSize)
	}
	if !ValidPartName(name) {
		return nil, fmt.Errorf("split: %q is not a plain file name", name)
	}
	list := &PartList{Format: PartsFormat, PartSize: partSize}
	whole := sha256.New()
	for i := 1; ; i++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		part, err := writePart(io.TeeReader(r, whole), filepath.Join(dir, PartName(name, i)), partSize)
		if err != nil {
			return nil, fmt.Errorf("split %s: part %d: %w", name, i, err)
		}
		if part == nil {
			break
		}
		part.Name = PartName(name, i)
		list.Parts = append(list.Parts, *part)
		list.Size += part.Size
		if part.Size < partSize {
			break
		}
	}
	if len(list.Parts) == 0 {
		return nil, fmt.Errorf("split %s: empty input", name)
	}
	list.Digest = digest.Digest("sha256:" + hex.EncodeToString(whole.Sum(nil)))
	data, err := list.Marshal()
	if err != nil {
		return nil, err
	}
	if err := writeFileSync(filepath.Join(dir, PartListName(name)), data); err != nil {
		return nil, fmt.Errorf("split %s: write part list: %w", name, err)
	}
	return list, nil
}

// writePart copies up to size bytes of r into path; it returns nil and removes nothing when r
// is already at its end.
func writePart(r io.Reader, path string, size int64) (*Part, error) {
	var first [1]byte
	n, err := io.ReadFull(r, first[:])
	if n == 0 {
		if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, nil
		}
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	w := io.MultiWriter(f, h)
	if _, err := w.Write(first[:]); err != nil {
		f.Close()
		return nil, err
	}
	copied, err := io.CopyN(w, r, size-1)
	if err != nil && err != io.EOF {
		f.Close()
		return nil, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	return &Part{Size: copied + 1, Digest: digest.Digest("sha256:" + hex.EncodeToString(h.Sum(nil)))}, nil
}

// ParsePartList parses and checks a part list before any part is read.
func ParsePartList(data []byte, lim Limits) (*PartList, error) {
	lim = lim.withDefaults()
	bad := func(format string, args ...any) error {
		return partErrorf(ItemPartList, CheckPart, fixRecopy, format, args...)
	}
	if int64(len(data)) > lim.MaxPartListSize {
		return nil, partErrorf(ItemPartList, CheckLimit, fixLimit, "%d bytes exceeds the part list limit %d", len(data), lim.MaxPartListSize)
	}
	var l PartList
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&l); err != nil {
		return nil, bad("not a part list: %v", err)
	}
	if l.Format != PartsFormat {
		return nil, bad("format %q, want %s", l.Format, PartsFormat)
	}
	if len(l.Parts) == 0 || len(l.Parts) > lim.MaxParts {
		return nil, partErrorf(ItemPartList, CheckLimit, fixLimit, "%d parts: between 1 and %d", len(l.Parts), lim.MaxParts)
	}
	if !validDigest(l.Digest) {
		return nil, bad("digest %q is not sha256", l.Digest)
	}
	if l.PartSize <= 0 || l.Size <= 0 || l.Size > lim.MaxTotalSize+int64(lim.MaxBlobs+4)*1024+1<<20 {
		return nil, bad("sizes out of range (size %d, part size %d)", l.Size, l.PartSize)
	}
	names := map[string]bool{}
	var sum int64
	for i, p := range l.Parts {
		if !ValidPartName(p.Name) {
			return nil, partErrorf(p.Name, CheckPath, fixRecopy, "part %d: %q is not a plain file name", i+1, p.Name)
		}
		if names[p.Name] {
			return nil, partErrorf(p.Name, CheckPart, fixRecopy, "listed twice (duplicate part)")
		}
		names[p.Name] = true
		if !validDigest(p.Digest) {
			return nil, partErrorf(p.Name, CheckPart, fixRecopy, "digest %q is not sha256", p.Digest)
		}
		last := i == len(l.Parts)-1
		if (!last && p.Size != l.PartSize) || (last && (p.Size <= 0 || p.Size > l.PartSize)) {
			return nil, partErrorf(p.Name, CheckPart, fixRecopy, "part %d of %d has size %d; every part but the last has %d bytes", i+1, len(l.Parts), p.Size, l.PartSize)
		}
		sum += p.Size
	}
	if sum != l.Size {
		return nil, bad("parts add up to %d bytes, the list says %d", sum, l.Size)
	}
	return &l, nil
}

// OpenParts opens the part list listName in fsys and returns a reader of the whole tar that
// reads the parts in list order, checking each part's size and digest as it is read and the
// whole tar's at the end. A missing, short, long or altered part is an error naming it.
func OpenParts(fsys fs.FS, listName string, lim Limits) (io.Reader, *PartList, error) {
	lim = lim.withDefaults()
	f, err := fsys.Open(listName)
	if err != nil {
		return nil, nil, partErrorf(listName, CheckMissing, "copy the part list along with the parts", "part list: %v", err)
	}
	data, err := readSmall(f, lim.MaxPartListSize)
	f.Close()
	switch {
	case errors.Is(err, errTooLarge):
		return nil, nil, partErrorf(listName, CheckLimit, fixLimit, "part list: %v", err)
	case err != nil: // the medium failed, not the list: no verdict on the bundle
		return nil, nil, fmt.Errorf("read part list %s: %w", listName, err)
	}
	list, err := ParsePartList(data, lim)
	if err != nil {
		return nil, nil, err
	}
	return &partsReader{fsys: fsys, list: list, whole: sha256.New()}, list, nil
}

// trustCheck reports whether check is a trust decision of the reader's policy: no damage in
// transit makes one (damage shows as a structural check first).
func trustCheck(check Check) bool {
	switch check {
	case CheckSignature, CheckKeyWindow, CheckExpired, CheckRollback, CheckReplay, CheckChain, CheckBase, CheckAgentRollback:
		return true
	}
	return false
}

// finishPart reads the part being read to its end, verifying it, and opens no other: it
// returns the part's error, if any. Between two parts (every byte read so far verified) it
// reads nothing.
func (p *partsReader) finishPart() error {
	if p.cur == nil || p.err != nil {
		return p.err
	}
	p.hold = true // Read opens no next part
	defer func() { p.hold = false }()
	buf := make([]byte, 32<<10)
	for p.cur != nil {
		if _, err := p.Read(buf); err != nil {
			if err == errHeld {
				return nil
			}
			return err
		}
	}
	return nil
}

// errHeld ends a read held at the end of a part.
var errHeld = errors.New("held at the end of a part")

// partsReader concatenates parts, verifying each.
type partsReader struct {
	fsys  fs.FS
	list  *PartList
	i     int
	cur   fs.File
	h     hash.Hash
	n     int64
	whole hash.Hash
	err   error
	// hold stops Read at the end of the current part (it returns errHeld then).
	hold bool
}

func (p *partsReader) Read(b []byte) (int, error) {
	for p.err == nil {
		if p.cur == nil {
			if p.hold {
				return 0, errHeld
			}
			if p.i == len(p.list.Parts) {
				got := digest.Digest("sha256:" + hex.EncodeToString(p.whole.Sum(nil)))
				if got != p.list.Digest {
					p.err = partErrorf(ItemPartList, CheckPart, fixRecopy, "the parts joined hash to %s, the list says %s", got, p.list.Digest)
				} else {
					p.err = io.EOF
				}
				break
			}
			part := p.list.Parts[p.i]
			f, err := p.fsys.Open(part.Name)
			if err != nil {
				p.err = partErrorf(part.Name, CheckPart, "copy every part of the bundle to the medium", "part %d of %d is missing: %v", p.i+1, len(p.list.Parts), err)
				break
			}
			p.cur, p.h, p.n = f, sha256.New(), 0
		}
		part := p.list.Parts[p.i]
		lim := b
		if remaining := part.Size - p.n; int64(len(lim)) > remaining+1 {
			lim = lim[:remaining+1]
		}
		n, err := p.cur.Read(lim)
		if p.n+int64(n) > part.Size {
			p.err = partErrorf(part.Name, CheckPart, fixRecopy, "part %d is longer than %d bytes", p.i+1, part.Size)
			break
		}
		p.n += int64(n)
		p.h.Write(lim[:n])
		p.whole.Write(lim[:n])
		if err == io.EOF {
			p.cur.Close()
			p.cur = nil
			if p.n != part.Size {
				p.err = partErrorf(part.Name, CheckPart, fixRecopy, "part %d is %d bytes, the list says %d (truncated)", p.i+1, p.n, part.Size)
				break
			}
			if got := digest.Digest("sha256:" + hex.EncodeToString(p.h.Sum(nil))); got != part.Digest {
				p.err = partErrorf(part.Name, CheckPart, fixRecopy, "part %d hashes to %s, the list says %s", p.i+1, got, part.Digest)
				break
			}
			p.i++
		} else if err != nil {
			p.err = fmt.Errorf("part %s: %w", part.Name, err)
			break
		}
		if n > 0 {
			return n, nil
		}
	}
	if p.cur != nil {
		p.cur.Close()
		p.cur = nil
	}
	return 0, p.err
}

// ReadParts reads a bundle split into parts: the part list listName and its parts in fsys.
// For a directory, pass os.Root's FS, so that no part name or symbolic link leads out of it.
func ReadParts(ctx context.Context, fsys fs.FS, listName string, opts ...ReadOption) (*Result, error) {
	var o readOptions
	for _, opt := range opts {
		opt(&o)
	}
	r, _, err := OpenParts(fsys, listName, o.limits)
	if err != nil {
		return nil, err
	}
	res, err := ReadTar(ctx, r, opts...)
	if err != nil {
		// A damaged part shows first as a bad blob or header inside it; read on to the end of
		// that part, and no further, so the error names the part, which is what the operator
		// must copy again. Never after a trust decision (a refused bundle is not read further),
		// an error of the medium, or the end of ctx (Ctrl-C).
		if e, ok := AsError(err); ok && e.Check != CheckPart && !trustCheck(e.Check) && ctx.Err() == nil {
			if perr := r.(*partsReader).finishPart(); perr != nil {
				if pe, ok := AsError(perr); ok && pe.Check == CheckPart {
					return nil, fmt.Errorf("%w (found while reading: %v)", pe, err)
				}
			}
		}
		return nil, err
	}
	return res, nil
}
