package cache_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/cache"
)

// Rejections are kept durably, listed oldest first, readable without the writer's lock, and
// bounded: the oldest go beyond MaxRejections. They never touch the state.
func TestRejectionsRecordedAndBounded(t *testing.T) {
	dir := t.TempDir()
	c := open(t, dir)
	r, err := cache.OpenReader(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := r.Rejections(); err != nil || len(got) != 0 {
		t.Fatalf("a new cache lists rejections %v (%v)", got, err)
	}
	base := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	for i := range cache.MaxRejections + 5 {
		err := c.RecordRejection(cache.Rejection{Time: base.Add(time.Duration(i) * time.Second), Source: "dir /drop", Candidate: fmt.Sprintf("b%d.tar", i),
			Identity: fmt.Sprint(i), Sequence: uint64(i), Check: string(bundle.CheckRollback), Message: "rollback", State: cache.State{Sequence: 7}})
		if err != nil {
			t.Fatal(err)
		}
	}
	got, err := r.Rejections()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != cache.MaxRejections || got[0].Candidate != "b5.tar" || got[len(got)-1].Candidate != fmt.Sprintf("b%d.tar", cache.MaxRejections+4) {
		t.Fatalf("kept %d rejections from %s to %s, want the last %d", len(got), got[0].Candidate, got[len(got)-1].Candidate, cache.MaxRejections)
	}
	if got[0].State.Sequence != 7 || got[0].Check != string(bundle.CheckRollback) || !got[0].Time.Equal(base.Add(5*time.Second)) {
		t.Fatalf("rejection read back as %+v", got[0])
	}
	if st, err := c.State(); err != nil || st.Sequence != 0 {
		t.Fatalf("recording rejections changed the state: %+v (%v)", st, err)
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "rejections")); len(entries) != cache.MaxRejections {
		t.Fatalf("%d files in rejections/, want %d", len(entries), cache.MaxRejections)
	}
}
