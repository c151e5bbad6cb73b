package reconcile

import (
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

func key(name string) objKey {
	return objKey{Kind: "Kustomization", NamespacedName: types.NamespacedName{Namespace: "ns", Name: name}}
}

// scheduler.run starts a key only after the earlier keys it depends on finished, runs at most n
// at once, lets independent keys overlap (a slow one does not hold the others back), cannot
// deadlock on a cycle, and returns the errors in the order of keys.
func TestSchedulerOrders(t *testing.T) {
	// a <- b <- c, d alone (slow), e depends on d, f depends on g which comes later (a
	// cycle's or an unordered dependency: not waited for).
	keys := []objKey{key("a"), key("d"), key("b"), key("c"), key("e"), key("f"), key("g")}
	deps := map[objKey][]objKey{
		key("b"): {key("a")}, key("c"): {key("b")}, key("e"): {key("d")}, key("f"): {key("g")}, key("g"): {key("f")},
	}
	for _, n := range []int{1, 2, 4} {
		var mu sync.Mutex
		finished := map[objKey]time.Time{}
		started := map[objKey]time.Time{}
		var running, peak atomic.Int32
		run := func(k objKey) error {
			now := running.Add(1)
			for {
				p := peak.Load()
				if now <= p || peak.CompareAndSwap(p, now) {
					break
				}
			}
			mu.Lock()
			started[k] = time.Now()
			mu.Unlock()
			if k.Name == "d" {
				time.Sleep(300 * time.Millisecond)
			} else {
				time.Sleep(20 * time.Millisecond)
			}
			mu.Lock()
			finished[k] = time.Now()
			mu.Unlock()
			running.Add(-1)
			if k.Name == "c" || k.Name == "a" {
				return errors.New(k.Name)
			}
			return nil
		}
		errs := newScheduler(n).run(keys, func(k objKey) []objKey { return deps[k] }, 0, run)
		var got []string
		for _, err := range errs {
			got = append(got, err.Error())
		}
		if !slices.Equal(got, []string{"a", "c"}) {
			t.Fatalf("n=%d: errors %v, want [a c] in the order of keys", n, got)
		}
		for k, ds := range deps {
			for _, d := range ds {
				if slices.Index(keys, d) < slices.Index(keys, k) && started[k].Before(finished[d]) {
					t.Fatalf("n=%d: %s started before its dependency %s finished", n, k.Name, d.Name)
				}
			}
		}
		if int(peak.Load()) > n && n > 1 || n == 1 && peak.Load() != 1 {
			t.Fatalf("n=%d: %d ran at once", n, peak.Load())
		}
		if n > 1 && !started[key("c")].Before(finished[key("d")]) {
			t.Fatalf("n=%d: the chain a-b-c waited for the slow d", n)
		}
		if n == 1 {
			for i := 1; i < len(keys); i++ {
				if started[keys[i]].Before(finished[keys[i-1]]) {
					t.Fatalf("n=1: %s started before %s finished", keys[i].Name, keys[i-1].Name)
				}
			}
		}
	}
}

// A key running longer than detach is left running: the pass returns without it, its
// dependents start, busy says it still runs until it is done, and its slot stays taken until
// then.
func TestSchedulerDetaches(t *testing.T) {
	s := newScheduler(2)
	release := make(chan struct{})
	var eStarted atomic.Bool
	run := func(k objKey) error {
		switch k.Name {
		case "slow":
			<-release
			return errors.New("slow failed")
		case "after":
			eStarted.Store(true)
		}
		return nil
	}
	keys := []objKey{key("slow"), key("after"), key("other")}
	deps := map[objKey][]objKey{key("after"): {key("slow")}}
	start := time.Now()
	errs := s.run(keys, func(k objKey) []objKey { return deps[k] }, 100*time.Millisecond, run)
	if len(errs) != 0 {
		t.Fatalf("errors %v: the detached key's error is not the pass's", errs)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("the pass took %s", d)
	}
	if !eStarted.Load() {
		t.Fatal("the dependent of the detached key did not run")
	}
	if !s.busy(key("slow")) || s.idle() {
		t.Fatal("the detached key is not busy")
	}
	// Its slot is still taken: one of two is free.
	select {
	case s.slots <- struct{}{}:
		<-s.slots
	default:
		t.Fatal("no slot free")
	}
	close(release)
	s.wait()
	if s.busy(key("slow")) || !s.idle() {
		t.Fatal("the finished key is still busy")
	}
	if len(s.slots) != 0 {
		t.Fatalf("%d slots still taken", len(s.slots))
	}
}
