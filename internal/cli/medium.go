package cli

import (
	"github.com/spf13/cobra"

	"github.com/ferry-gitops/ferry/medium"
)

// BundleArgHelp says what a BUNDLE argument may be (medium.Parse's grammar).
const BundleArgHelp = `BUNDLE is a bundle directory, a .tar file, a part list (NAME.parts.json, its parts beside
it), s3://bucket/prefix/NAME.parts.json, or oci://host/repository:tag.`

// MediumFlags are the flags that say how to reach the network media a BUNDLE argument names.
type MediumFlags struct {
	s3Endpoint string
	s3Insecure bool
	plainHTTP  []string
}

// AddMediumFlags adds --s3-endpoint, --s3-insecure and --plain-http to cmd.
func AddMediumFlags(cmd *cobra.Command) *MediumFlags {
	m := &MediumFlags{}
	f := cmd.Flags()
	f.StringVar(&m.s3Endpoint, "s3-endpoint", "s3.amazonaws.com", "S3-compatible endpoint (host:port) for s3:// bundles")
	f.BoolVar(&m.s3Insecure, "s3-insecure", false, "reach the S3 endpoint over plain HTTP")
	f.StringSliceVar(&m.plainHTTP, "plain-http", nil, "registry hosts (host:port) to reach over plain HTTP")
	return m
}

// Options are the medium options the flags give.
func (m *MediumFlags) Options() []medium.Option {
	return []medium.Option{medium.WithS3Endpoint(m.s3Endpoint, m.s3Insecure), medium.WithPlainHTTP(m.plainHTTP...)}
}
