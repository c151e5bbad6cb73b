package bundle

// Limits bound what a reader accepts. Each is checked before the thing it bounds is parsed or
// hashed. Zero fields take the default.
type Limits struct {
	// MaxManifestSize bounds index.json, the root, and every manifest and index.
	MaxManifestSize int64
	// MaxBlobs bounds the distinct blobs in the graph.
	MaxBlobs int
	// MaxBlobSize bounds any one blob.
	MaxBlobSize int64
	// MaxTotalSize bounds the sum of all blob sizes.
	MaxTotalSize int64
	// MaxAttachments bounds the attachments (signatures) in index.json.
	MaxAttachments int
	// MaxPartListSize bounds a part list file.
	MaxPartListSize int64
	// MaxParts bounds the parts in a part list.
	MaxParts int
}

// Default limits.
const (
	DefaultMaxManifestSize = 4 << 20
	DefaultMaxBlobs        = 100_000
	DefaultMaxBlobSize     = 64 << 30
	DefaultMaxTotalSize    = 1 << 40
	DefaultMaxAttachments  = 16
	DefaultMaxPartListSize = 1 << 20
	DefaultMaxParts        = 100_000
	maxLayoutFileSize      = 1 << 10
)

// MaxAttachmentBytes bounds the bytes of the root's attachments (its signature manifests and
// the blobs under them), all together. They are the only bytes a reader reads before the
// root's trust decision, so an untrusted bundle costs at most this much (signatures are a few
// KiB). It is fixed, not a Limit: raising it would let an unsigned bundle cost more.
const MaxAttachmentBytes = 4 << 20

// withDefaults returns l with every zero field set to its default.
func (l Limits) withDefaults() Limits {
	set := func(v *int64, d int64) {
		if *v <= 0 {
			*v = d
		}
	}
	seti := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	set(&l.MaxManifestSize, DefaultMaxManifestSize)
	seti(&l.MaxBlobs, DefaultMaxBlobs)
	set(&l.MaxBlobSize, DefaultMaxBlobSize)
	set(&l.MaxTotalSize, DefaultMaxTotalSize)
	seti(&l.MaxAttachments, DefaultMaxAttachments)
	set(&l.MaxPartListSize, DefaultMaxPartListSize)
	seti(&l.MaxParts, DefaultMaxParts)
	return l
}

// maxTarEntries bounds the entries of a tar: every blob plus oci-layout, index.json and two folders.
func (l Limits) maxTarEntries() int { return l.MaxBlobs + 4 }

// Limits of single items that both halves of Ferry apply: `mirror pack` refuses what sync
// would refuse, so an item that packs is an item that deploys.
const (
	// MaxChartSize bounds a chart archive (.tgz): mirror refuses to carry a larger one and
	// sync refuses to read one.
	MaxChartSize = 64 << 20
	// MaxTreeEntries bounds the entries (files, folders, links) of a Git source's tree.
	MaxTreeEntries = 100_000
	// MaxTreeSize bounds the bytes of a Git source's files together.
	MaxTreeSize = 512 << 20
)

// WithDefaults returns l with every zero field set to its default: the limits a reader of the
// bundle applies, which `mirror pack` applies to what it fetches.
func (l Limits) WithDefaults() Limits { return l.withDefaults() }
