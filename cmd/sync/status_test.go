package main

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferry-gitops/ferry/agent"
	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/cache"
)

// sync status lists the rejections the agent recorded, while the agent holds the cache's
// lock; on a cache nothing made yet it says no bundle was accepted.
func TestStatusListsRejections(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cache")
	status := func(args ...string) string {
		t.Helper()
		cmd := statusCommand()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetArgs(append([]string{"--cache", dir}, args...))
		if err := cmd.Execute(); err != nil {
			t.Fatal(err)
		}
		return out.String()
	}
	if got := status(); got != "no bundle accepted yet\nSEQUENCE  ROOT  CREATED  EXPIRES  ACCEPTED  ITEMS\n" {
		t.Fatalf("status of a cache nothing made yet:\n%q", got)
	}
	w, err := cache.Open(dir) // the agent's writer's lock, held while status runs
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.RecordRejection(cache.Rejection{Time: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC), Source: "dir /drop", Candidate: "old.tar", Identity: "x",
		Sequence: 1, Check: string(bundle.CheckRollback), Message: "bundle 1 rejected: root: sequence 1 < last accepted 2 (check: rollback); fix: see 'sync status'"}); err != nil {
		t.Fatal(err)
	}
	// A candidate the agent found stuck (its medium kept failing) is listed apart, with the
	// medium's error.
	if err := w.RecordRejection(cache.Rejection{Time: time.Date(2026, 11, 25, 11, 0, 0, 0, time.UTC), Source: "registry 127.0.0.1:5000/ferry/bundles", Candidate: "evil", Identity: "y",
		Sequence: 1, Check: agent.CheckStuck, Message: "failed 5 times in a row, last with: unexpected EOF"}); err != nil {
		t.Fatal(err)
	}
	text := status()
	for _, want := range []string{"rejected (last 1, newest last; left where they were):", "TIME", "CHECK",
		"2026-11-25T10:00:00Z  dir /drop  old.tar  1         rollback  bundle 1 rejected: root: sequence 1 < last accepted 2 (check: rollback)",
		"stuck (last 1, newest last; the medium kept failing past the retries: still retried, later bundles no longer wait for them):",
		"TIME                  SOURCE                                 BUNDLE  SEQUENCE  MEDIUM ERROR",
		"2026-11-25T11:00:00Z  registry 127.0.0.1:5000/ferry/bundles  evil    1         failed 5 times in a row, last with: unexpected EOF"} {
		if !strings.Contains(text, want) {
			t.Fatalf("status does not say %q:\n%s", want, text)
		}
	}
	var out struct {
		Rejections []cache.Rejection `json:"rejections"`
		Bundles    []cache.Record    `json:"bundles"`
	}
	if err := json.Unmarshal([]byte(status("-o", "json")), &out); err != nil {
		t.Fatal(err)
	}
	if len(out.Rejections) != 2 || out.Rejections[0].Check != string(bundle.CheckRollback) || out.Rejections[0].Candidate != "old.tar" || out.Rejections[1].Check != agent.CheckStuck || out.Bundles == nil {
		t.Fatalf("status -o json: %+v", out)
	}
}
