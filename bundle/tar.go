package bundle

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"time"
)

// epoch is every tar header's modification time, so the same bundle gives the same tar.
var epoch = time.Unix(0, 0).UTC()

// WriteTar writes the bundle in the layout directory dir to w as a tar in stream order,
// verifying every blob as it is read. The same bundle always gives the same bytes.
func WriteTar(ctx context.Context, w io.Writer, dir string, opts ...ReadOption) (*Result, error) {
	tw := tar.NewWriter(w)
	dirsWritten := false
	visit := func(_ context.Context, e Entry, r io.Reader) error {
		if e.Path != LayoutFile && e.Path != IndexFile && !dirsWritten {
			for _, d := range []string{blobsDir + "/", sha256Dir + "/"} {
				if err := tw.WriteHeader(tarHeader(d, tar.TypeDir, 0)); err != nil {
					return err
				}
			}
			dirsWritten = true
		}
		if err := tw.WriteHeader(tarHeader(e.Path, tar.TypeReg, e.Descriptor.Size)); err != nil {
			return err
		}
		if _, err := io.Copy(tw, r); err != nil {
			return err
		}
		return nil
	}
	res, err := ReadLayout(ctx, dir, append(opts, WithVisitor(visit))...)
	if err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("finish tar: %w", err)
	}
	return res, nil
}

func tarHeader(name string, typ byte, size int64) *tar.Header {
	mode := int64(0o644)
	if typ == tar.TypeDir {
		mode = 0o755
	}
	return &tar.Header{Typeflag: typ, Name: name, Size: size, Mode: mode, ModTime: epoch}
}

// ExtractTar reads a bundle tar from r and writes it as a layout directory at dir, byte for
// byte, verifying everything once while it is copied. index.json is written last, and only
// when the whole bundle verified; on error dir holds no index.json and must be discarded.
func ExtractTar(ctx context.Context, r io.Reader, dir string, opts ...ReadOption) (*Result, error) {
	l, err := NewLayout(dir)
	if err != nil {
		return nil, err
	}
	var layout []byte
	visit := func(_ context.Context, e Entry, r io.Reader) error {
		switch e.Path {
		case LayoutFile:
			b, err := io.ReadAll(r)
			layout = b
			return err
		case IndexFile:
			return nil // written last, from the result
		}
		return l.writeBlob(e.Descriptor, r)
	}
	res, err := ReadTar(ctx, r, append(opts, WithVisitor(visit))...)
	if err != nil {
		return nil, err
	}
	if err := writeFileSync(l.dir+"/"+LayoutFile, layout); err != nil {
		return nil, err
	}
	if err := l.WriteIndex(res.Index); err != nil {
		return nil, err
	}
	return res, nil
}
