package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// sync run's configuration: the file, with the flags given overriding it; or flags alone.
func TestRunConfigFlagsOverrideTheFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "sync.yaml")
	if err := os.WriteFile(file, []byte(`apiVersion: ferry.dev/v1alpha1
kind: SyncConfig
cache: /var/lib/ferry/cache
keys: [{path: /etc/ferry/keys/a.pub}, {path: /etc/ferry/keys/b.pub}]
threshold: 2
sources:
  - dir: /var/lib/ferry/drop
  - s3: {endpoint: minio.example:9000, bucket: bundles}
intervals: {poll: 30s}
health: {listen: ":8080"}
leaderElection: {enabled: true}
installCRDs: true
`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
		err  string
	}{
		{"the file alone", []string{"--config", file}, "cache=/var/lib/ferry/cache keys=[/etc/ferry/keys/a.pub /etc/ferry/keys/b.pub] threshold=2 sources=[dir:/var/lib/ferry/drop s3:bundles] poll=30s reconcile=1m0s health=:8080 leader=true crds=true serve=htpasswd:,rate:0,burst:100", ""},
		{"flags override", []string{"--config", file, "--cache", "/data/cache", "--health-listen", ":9090", "--leader-elect=false", "--poll-interval", "2s",
			"--key", "/k/c.pub", "--threshold", "1", "--drop-dir", "/media/usb", "--htpasswd", "/etc/ferry/htpasswd", "--rate-limit", "20", "--burst", "5"},
			"cache=/data/cache keys=[/k/c.pub] threshold=1 sources=[s3:bundles dir:/media/usb] poll=2s reconcile=1m0s health=:9090 leader=false crds=true serve=htpasswd:/etc/ferry/htpasswd,rate:20,burst:5", ""},
		{"flags alone", []string{"--key", "/k/c.pub", "--drop-dir", "/drop", "--reconcile-interval", "5m"}, "cache=/var/lib/ferry/cache keys=[/k/c.pub] threshold=1 sources=[dir:/drop] poll=10s reconcile=5m0s health=:8080 leader=false crds=false serve=htpasswd:,rate:0,burst:100", ""},
		{"a flag that breaks the file", []string{"--config", file, "--threshold", "3"}, "", "threshold: 3, want between 1 and the number of keys (2)"},
		{"flags alone, no key", []string{"--drop-dir", "/drop"}, "", "keys: pin at least one public key bundles must be signed by (sync run --key)"},
		{"a file that does not parse", []string{"--config", filepath.Join(dir, "missing.yaml")}, "", "missing.yaml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd, o := newRunCommand()
			if err := cmd.ParseFlags(tc.args); err != nil {
				t.Fatal(err)
			}
			cfg, err := o.config(cmd)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("want an error saying %q, got %v", tc.err, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var keys, sources []string
			for _, k := range cfg.Keys {
				keys = append(keys, k.Path)
			}
			for _, s := range cfg.Sources {
				switch {
				case s.Dir != "":
					sources = append(sources, "dir:"+s.Dir)
				case s.S3 != nil:
					sources = append(sources, "s3:"+s.S3.Bucket)
				}
			}
			got := fmt.Sprintf("cache=%s keys=[%s] threshold=%d sources=[%s] poll=%s reconcile=%s health=%s leader=%v crds=%v serve=htpasswd:%s,rate:%g,burst:%d",
				cfg.Cache, strings.Join(keys, " "), cfg.Threshold, strings.Join(sources, " "), cfg.Intervals.Poll.Duration, cfg.Intervals.Reconcile.Duration,
				cfg.Health.Listen, cfg.LeaderElection.Enabled, cfg.InstallCRDs, cfg.Serve.HTPasswd, cfg.Serve.RateLimit, cfg.Serve.Burst)
			if got != tc.want {
				t.Fatalf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}
