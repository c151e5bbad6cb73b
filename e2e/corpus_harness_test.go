package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/cache"
	"github.com/ferry-gitops/ferry/internal/testbundle"
	"github.com/ferry-gitops/ferry/internal/testenv"
	"github.com/ferry-gitops/ferry/medium"
	"github.com/ferry-gitops/ferry/signing"
	"github.com/ferry-gitops/ferry/verify"
)

// media is a set of the five media a bundle moves on.
type media uint8

const (
	onDir media = 1 << iota
	onTar
	onParts
	onS3
	onRegistry

	// onStream is every medium that carries the bundle as a tar (a file, parts, parts in a bucket).
	onStream = onTar | onParts | onS3
	// onFiles is every medium that holds a well-formed bundle: what a registry can hold too.
	onFiles = onDir | onStream
	onAll   = onFiles | onRegistry
)

var mediaNames = []struct {
	m    media
	name string
}{{onDir, "dir"}, {onTar, "tar"}, {onParts, "parts"}, {onS3, "s3"}, {onRegistry, "registry"}}

// hostileBundle is one hostile bundle as a case builds it: a layout directory (the directory
// medium; the tar, parts and bucket carry it as a tar in stream order, and a registry as
// pushed by medium.Write), or a tar of its own for damage only a tar can carry.
type hostileBundle struct {
	dir string
	tar []byte
	// damageParts changes the parts after the tar is split (parts and bucket).
	damageParts func(t testing.TB, dir string, list *bundle.PartList)
	// observe, when set, watches the read (it may change the medium under the reader).
	observe func(e bundle.Entry)
	// fault, when set, puts a failing medium in front of the placed one (a proxy that cuts or
	// stalls the stream, say) and returns the location and options to read through it. The
	// freeze and failed-commit cases of issue 15 plug in here.
	fault func(t *testing.T, srv *corpusServers, loc medium.Location, opts []medium.Option) (medium.Location, []medium.Option)
	// mediumFailure: the outcome is the medium's failure (a *medium.Error, or the deadline),
	// no verdict on the bundle; timeout bounds the import.
	mediumFailure bool
	timeout       time.Duration
	// commitOnFullDisk puts the case's cache on a tmpfs of its own with room (inodes) to stage
	// the bundle and none to commit it: the import fails at its journal, naming the disk, is
	// undone, and succeeds once space is freed (a failed commit, issue 15).
	commitOnFullDisk bool
}

// corpusKit is what a case builds from: the signers, the last accepted bundle, and the policy
// the agent checks with (a case may change its copy).
type corpusKit struct {
	a1, a2, ed, mallory pinned
	last                *testbundle.Fixture // sequence 2, accepted
	first               *testbundle.Fixture // sequence 1, accepted before it
	policy              verify.Policy
	now                 time.Time
}

// pinned is a signing key and the key the agent pins for it.
type pinned struct {
	sv  signature.SignerVerifier
	key verify.TrustedKey
}

func newPinned(t testing.TB, name string, ed bool) pinned {
	t.Helper()
	var sv signature.SignerVerifier
	var err error
	if ed {
		_, k, gerr := ed25519.GenerateKey(rand.Reader)
		if gerr != nil {
			t.Fatal(gerr)
		}
		sv, err = signature.LoadED25519SignerVerifier(k)
	} else {
		k, gerr := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if gerr != nil {
			t.Fatal(gerr)
		}
		sv, err = signature.LoadECDSASignerVerifier(k, crypto.SHA256)
	}
	if err != nil {
		t.Fatal(err)
	}
	return pinned{sv, verify.TrustedKey{Key: verify.Key{Name: name, Verifier: sv}}}
}

// signedBy signs a root with each key, in one cosign signature manifest (as mirror pack does).
func signedBy(ps ...pinned) testbundle.SignFunc {
	return func(t testing.TB, l *bundle.Layout, root ocispec.Descriptor) []ocispec.Descriptor {
		var svs []signature.Signer
		for _, p := range ps {
			svs = append(svs, p.sv)
		}
		d, err := signing.Sign(context.Background(), l, root, svs...)
		if err != nil {
			t.Fatal(err)
		}
		return []ocispec.Descriptor{d}
	}
}

// next is a bundle after the last accepted one, signed by sign.
func (k *corpusKit) next(t testing.TB, sign testbundle.SignFunc) *testbundle.Fixture {
	return testbundle.New(t, 3, k.last.Root.Digest, sign)
}

// corpusCase is one hostile bundle: the check that must refuse it (and the item it names, ""
// for any), and the media it applies to. tarCheck, when set, is the check on the tar media
// (where a blob the directory lacks is a truncated stream, say).
type corpusCase struct {
	name     string
	on       media
	check    bundle.Check
	tarCheck bundle.Check
	item     string
	make     func(t *testing.T, k *corpusKit) hostileBundle
}

// rawTar writes the layout in dir as a tar in stream order without checking anything, so a
// damaged layout travels as the same damaged tar: oci-layout, index.json, the two folders, and
// each entry's graph depth first, each blob once, present blobs only.
func rawTar(t testing.TB, dir string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	put := func(name string, typ byte, data []byte) {
		h := &tar.Header{Name: name, Typeflag: typ, Mode: 0o644, ModTime: testbundle.Created, Format: tar.FormatPAX}
		if typ == tar.TypeDir {
			h.Mode = 0o755
		} else {
			h.Size = int64(len(data))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	read := func(name string) ([]byte, bool) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		return b, err == nil
	}
	layout, _ := read(bundle.LayoutFile)
	put(bundle.LayoutFile, tar.TypeReg, layout)
	index, _ := read(bundle.IndexFile)
	put(bundle.IndexFile, tar.TypeReg, index)
	put("blobs/", tar.TypeDir, nil)
	put("blobs/sha256/", tar.TypeDir, nil)
	var idx ocispec.Index
	json.Unmarshal(index, &idx)
	seen := map[digest.Digest]bool{}
	var walk func(d ocispec.Descriptor)
	walk = func(d ocispec.Descriptor) {
		if seen[d.Digest] || d.Digest.Validate() != nil {
			return
		}
		seen[d.Digest] = true
		name := "blobs/sha256/" + d.Digest.Encoded()
		data, ok := read(name)
		if !ok {
			return
		}
		put(name, tar.TypeReg, data)
		var m struct {
			Config    *ocispec.Descriptor  `json:"config"`
			Layers    []ocispec.Descriptor `json:"layers"`
			Manifests []ocispec.Descriptor `json:"manifests"`
		}
		switch d.MediaType {
		case ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageIndex, bundle.MediaTypeDockerManifest, "application/vnd.docker.distribution.manifest.list.v2+json":
			if json.Unmarshal(data, &m) != nil {
				return
			}
		default:
			return
		}
		if m.Config != nil {
			walk(*m.Config)
		}
		for _, c := range append(m.Layers, m.Manifests...) {
			walk(c)
		}
	}
	for _, e := range idx.Manifests {
		walk(e)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// cacheTreeHash is a cache folder byte for byte: every entry's path, type, mode and (for files) the
// SHA-256 of its content.
func cacheTreeHash(t testing.TB, dir string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		line := fmt.Sprintf("%s %s", rel, fi.Mode())
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			line += " " + hex.EncodeToString(sum[:])
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// corpusServers are the servers every case shares: one MinIO bucket and one registry.
type corpusServers struct {
	reg     *testenv.Registry
	s3      *minio.Client
	s3creds *credentials.Credentials
	bucket  string
}

// placeOn puts a hostile bundle on a medium and returns its location and the medium options.
func (s *corpusServers) placeOn(t *testing.T, m media, caseID string, h hostileBundle) (medium.Location, []medium.Option) {
	t.Helper()
	ctx := context.Background()
	tarball := h.tar
	if tarball == nil && m&onStream != 0 {
		tarball = rawTar(t, h.dir)
	}
	parts := func() string {
		dir := t.TempDir()
		list, err := bundle.Split(ctx, bytes.NewReader(tarball), dir, "b.tar", 4<<10)
		if err != nil {
			t.Fatal(err)
		}
		if h.damageParts != nil {
			h.damageParts(t, dir, list)
		}
		return dir
	}
	switch m {
	case onDir:
		return medium.Layout(h.dir), nil
	case onTar:
		p := filepath.Join(t.TempDir(), "b.tar")
		if err := os.WriteFile(p, tarball, 0o644); err != nil {
			t.Fatal(err)
		}
		return medium.TarFile(p), nil
	case onParts:
		return medium.Parts(parts(), "b.tar"), nil
	case onS3:
		dir := parts()
		files, _ := os.ReadDir(dir)
		for _, f := range files { // uploaded as they are: the bucket holds the damage
			if _, err := s.s3.FPutObject(ctx, s.bucket, caseID+"/"+f.Name(), filepath.Join(dir, f.Name()), minio.PutObjectOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		return medium.S3(s.bucket, caseID, "b.tar"), []medium.Option{medium.WithS3Client(s.s3)}
	case onRegistry:
		loc := medium.Registry(s.reg.Host+"/corpus/"+caseID, "b")
		opts := []medium.Option{medium.WithPlainHTTP(s.reg.Host)}
		if _, err := medium.Write(ctx, loc, h.dir, opts...); err != nil {
			t.Fatalf("push to the registry: %v", err)
		}
		return loc, opts
	}
	t.Fatalf("medium %d", m)
	return medium.Location{}, nil
}

// newCorpusKit makes the signers and bundles 1 and 2 (to be accepted before each case), the
// policy the agent checks with (keys a1 and ed pinned) and the genuine bundle 3.
func newCorpusKit(t *testing.T) (*corpusKit, verify.Policy, *testbundle.Fixture) {
	k := &corpusKit{a1: newPinned(t, "ops-2026", false), a2: newPinned(t, "ops-backup", false),
		ed: newPinned(t, "ops-ed25519", true), mallory: newPinned(t, "mallory", false), now: testbundle.Created.Add(time.Hour)}
	base := verify.Policy{Keys: []verify.TrustedKey{k.a1.key, k.ed.key}, Now: func() time.Time { return k.now }}
	k.first = testbundle.New(t, 1, "", signedBy(k.a1))
	k.last = testbundle.New(t, 2, k.first.Root.Digest, signedBy(k.a1))
	return k, base, k.next(t, signedBy(k.a1))
}

// runCorpus runs every case through cache.Import, by medium.Read, on each medium it applies to:
// each is refused by its check, leaves the cache folder byte-identical, and the next genuine
// bundle is accepted after it. It returns how many (case, medium) runs it made.
func runCorpus(t *testing.T, cases []corpusCase, srv *corpusServers) int {
	ctx := context.Background()
	k, base, genuine := newCorpusKit(t)

	// The template: a cache that accepted bundles 1 and 2. Each case gets a copy.
	template := t.TempDir()
	tc, err := cache.Open(template)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []*testbundle.Fixture{k.first, k.last} {
		if _, err := tc.Import(ctx, func(opts ...bundle.ReadOption) (*bundle.Result, error) {
			return medium.Read(ctx, medium.Layout(f.Dir), medium.WithReadOptions(opts...))
		}, base); err != nil {
			t.Fatalf("template bundle %d: %v", f.Bundle.Sequence, err)
		}
	}
	tc.Close()

	runs := 0
	for ci, c := range cases {
		for _, mn := range mediaNames {
			if c.on&mn.m == 0 {
				continue
			}
			runs++
			t.Run(mn.name+"/"+c.name, func(t *testing.T) {
				k.policy = base
				k.policy.Keys = append([]verify.TrustedKey(nil), base.Keys...)
				h := c.make(t, k)
				policy := k.policy
				loc, mopts := srv.placeOn(t, mn.m, fmt.Sprintf("case-%03d-%s", ci, mn.name), h)
				if h.fault != nil {
					loc, mopts = h.fault(t, srv, loc, mopts)
				}
				ictx, cancel := context.WithCancel(ctx)
				if h.timeout > 0 {
					ictx, cancel = context.WithTimeout(ctx, h.timeout)
				}
				defer cancel()

				dir := t.TempDir()
				var freeDisk func()
				if h.commitOnFullDisk {
					dir, freeDisk = cacheOnFullDisk(t, template, h.dir, policy)
				} else {
					copyDir(t, template, dir)
				}
				c1, err := cache.Open(dir)
				if err != nil {
					t.Fatal(err)
				}
				defer c1.Close()
				before := cacheTreeHash(t, dir)
				var ropts []bundle.ReadOption
				if h.observe != nil {
					ropts = append(ropts, bundle.WithObserver(h.observe))
				}
				_, err = c1.Import(ictx, func(opts ...bundle.ReadOption) (*bundle.Result, error) {
					return medium.Read(ictx, loc, append(mopts, medium.WithReadOptions(append(opts, ropts...)...))...)
				}, policy)
				if err == nil {
					t.Fatal("accepted")
				}
				if h.commitOnFullDisk {
					if _, ok := bundle.AsError(err); ok {
						t.Fatalf("a full disk reported as a rejection: %v", err)
					}
					for _, want := range []string{"the disk holding the cache " + dir + " is full", "no space left on device", "the import was undone"} {
						if !strings.Contains(err.Error(), want) {
							t.Fatalf("the error does not say %q: %v", want, err)
						}
					}
				} else if h.mediumFailure {
					var me *medium.Error
					if !errors.As(err, &me) && !errors.Is(err, context.DeadlineExceeded) {
						t.Fatalf("not the medium's failure: %v", err)
					}
					if _, ok := bundle.AsError(err); ok && me == nil {
						t.Fatalf("a medium failure reported as a rejection: %v", err)
					}
				} else {
					want := c.check
					if c.tarCheck != "" && mn.m&onStream != 0 {
						want = c.tarCheck
					}
					r, ok := bundle.AsError(err)
					if !ok {
						t.Fatalf("not a rejection: %v", err)
					}
					if r.Check != want {
						t.Fatalf("refused by check %q, want %q: %v", r.Check, want, err)
					}
					if c.item != "" && r.Item != c.item {
						t.Fatalf("names %q, want %q: %v", r.Item, c.item, err)
					}
					if !strings.Contains(err.Error(), "rejected: ") || !strings.Contains(err.Error(), "fix: ") {
						t.Fatalf("message does not say the bundle was rejected and the fix: %v", err)
					}
				}
				if after := cacheTreeHash(t, dir); after != before {
					t.Fatalf("a rejected bundle changed the cache:\nbefore:\n%s\nafter:\n%s", before, after)
				}
				if freeDisk != nil {
					freeDisk()
				}
				// The next genuine bundle is accepted after it.
				if _, err := c1.Import(ctx, func(opts ...bundle.ReadOption) (*bundle.Result, error) {
					return medium.Read(ctx, medium.Layout(genuine.Dir), medium.WithReadOptions(opts...))
				}, base); err != nil {
					t.Fatalf("the genuine bundle after the hostile one: %v", err)
				}
				if st, err := c1.State(); err != nil || st.Root != genuine.Root.Digest {
					t.Fatalf("state after the genuine bundle: %+v %v", st, err)
				}
				t.Logf("%v", err)
			})
		}
	}
	return runs
}

// patchTarSize rewrites the size field of the header of entry name in a tar.
func patchTarSize(t testing.TB, tb []byte, name string, size int64) []byte {
	t.Helper()
	for off := 0; off+512 <= len(tb); off += 512 {
		h := tb[off : off+512]
		if string(bytes.TrimRight(h[:100], "\x00")) != name {
			continue
		}
		copy(h[124:136], fmt.Sprintf("%011o\x00", size))
		// The header checksum: the sum of its bytes with the checksum field as spaces.
		copy(h[148:156], "        ")
		sum := 0
		for _, b := range h {
			sum += int(b)
		}
		copy(h[148:156], fmt.Sprintf("%06o\x00 ", sum))
		return tb
	}
	t.Fatalf("no tar header named %s", name)
	return nil
}

// TestHostileCorpus runs every hostile bundle of the corpus through the real importer
// (cache.Open, cache.Import, medium.Read) on each medium it applies to: a directory, a tar,
// parts in a folder, parts in a MinIO bucket and a tag in a Distribution registry. Each is
// refused by its expected check, the cache folder is byte-identical afterwards, and the next
// genuine bundle is accepted.
func TestHostileCorpus(t *testing.T) {
	ctx := context.Background()
	srv := &corpusServers{reg: testenv.NewRegistry(t)}
	m := testenv.NewMinIO(t)
	var err error
	if srv.bucket, err = m.MakeBucket(ctx, "corpus"); err != nil {
		t.Fatal(err)
	}
	if srv.s3, err = m.Client(); err != nil {
		t.Fatal(err)
	}
	srv.s3creds = credentials.NewStaticV4(m.AccessKey, m.SecretKey, "")
	cases := corpus()
	runs := runCorpus(t, cases, srv)
	perMedium := map[string]int{}
	for _, c := range cases {
		for _, mn := range mediaNames {
			if c.on&mn.m != 0 {
				perMedium[mn.name]++
			}
		}
	}
	t.Logf("hostile corpus: %d cases, %d runs through cache.Import (%v)", len(cases), runs, perMedium)
	if len(cases) < 60 {
		t.Fatalf("the corpus has %d cases; its floor is 60", len(cases))
	}
}

// faultProxy is a loopback TCP proxy to target that, on each connection, passes the first
// pass bytes of the server's answers and then cuts the connection (stall false) or holds it open
// sending nothing (stall true): a truncated stream, or endless slow retrieval. It returns its
// host:port.
func faultProxy(t *testing.T, target string, pass int64, stall bool) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { close(done); l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				up, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer up.Close()
				go io.Copy(up, c)
				io.Copy(c, io.LimitReader(up, pass))
				if stall {
					select {
					case <-done:
					case <-time.After(time.Minute):
					}
				}
			}()
		}
	}()
	return l.Addr().String()
}

// throughRegistryFault reads a registry bundle through a fault proxy.
func throughRegistryFault(pass int64, stall bool) func(*testing.T, *corpusServers, medium.Location, []medium.Option) (medium.Location, []medium.Option) {
	return func(t *testing.T, srv *corpusServers, loc medium.Location, _ []medium.Option) (medium.Location, []medium.Option) {
		host := faultProxy(t, srv.reg.Host, pass, stall)
		name := strings.TrimPrefix(loc.String(), "oci://")
		name = strings.TrimPrefix(name, srv.reg.Host)
		repo, tag, _ := strings.Cut(strings.TrimPrefix(name, "/"), ":")
		return medium.Registry(host+"/"+repo, tag), []medium.Option{medium.WithPlainHTTP(host)}
	}
}

// throughS3Fault reads a bucket bundle through a fault proxy in front of MinIO.
func throughS3Fault(pass int64, stall bool) func(*testing.T, *corpusServers, medium.Location, []medium.Option) (medium.Location, []medium.Option) {
	return func(t *testing.T, srv *corpusServers, loc medium.Location, _ []medium.Option) (medium.Location, []medium.Option) {
		host := faultProxy(t, srv.s3.EndpointURL().Host, pass, stall)
		c, err := minio.New(host, &minio.Options{Creds: srv.s3creds, Secure: false, MaxRetries: 1})
		if err != nil {
			t.Fatal(err)
		}
		return loc, []medium.Option{medium.WithS3Client(c)}
	}
}

// cacheOnFullDisk copies the template cache onto a tmpfs of its own and fills the tmpfs's inodes
// but for those staging bundle dir needs (its staging folder, its blobs folder and one file per
// blob the template lacks, counted by a probe import): the commit's first file, the journal,
// finds the disk full. It returns the cache's folder and a function that frees the space.
func cacheOnFullDisk(t *testing.T, template, dir string, policy verify.Policy) (string, func()) {
	t.Helper()
	probe := t.TempDir()
	copyDir(t, template, probe)
	pc, err := cache.Open(probe)
	if err != nil {
		t.Fatal(err)
	}
	res, err := pc.Import(context.Background(), func(opts ...bundle.ReadOption) (*bundle.Result, error) {
		return medium.Read(context.Background(), medium.Layout(dir), medium.WithReadOptions(opts...))
	}, policy)
	pc.Close()
	if err != nil {
		t.Fatalf("probe import of the bundle whose commit is to fail: %v", err)
	}
	disk := filepath.Join(t.TempDir(), "disk")
	testenv.MountTmpfs(t, disk, "size=16m,nr_inodes=1000")
	work := filepath.Join(disk, "cache")
	os.Mkdir(work, 0o755)
	copyDir(t, template, work)
	return work, testenv.FillInodes(t, disk, 2+res.New)
}
