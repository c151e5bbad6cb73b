package reconcile

import (
	"sync"
	"time"
)

// DefaultDetachAfter is how long ReconcileAll waits for one Kustomization or HelmRelease
// before it lets the pass go on without it (Options.DetachAfter).
const DefaultDetachAfter = time.Minute

// scheduler runs the Kustomizations and HelmReleases of passes: at most cap(slots) at once,
// across passes, each after its dependencies. An object still running after detach (a
// release waiting for its Pods, a slow remote cluster) is left to finish on its own: the pass
// goes on, its dependents run (and find it not Ready), and later passes skip it until it is
// done, as Flux's controllers, whose workers are not held by each other's waits.
type scheduler struct {
	slots chan struct{}
	// mu guards running: the objects that outlived the pass that started them.
	mu      sync.Mutex
	running map[objKey]bool
	bg      sync.WaitGroup
}

func newScheduler(n int) *scheduler {
	if n < 1 {
		n = 1
	}
	return &scheduler{slots: make(chan struct{}, n), running: map[objKey]bool{}}
}

// busy reports whether the object named key is still running from an earlier pass.
func (s *scheduler) busy(key objKey) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.running[key]
}

// idle reports whether no object is running from an earlier pass.
func (s *scheduler) idle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.running) == 0
}

// wait waits until no object runs from an earlier pass.
func (s *scheduler) wait() { s.bg.Wait() }

// run calls run for every key of keys, which are in dependency order (each key after the keys
// it depends on, as planGraph orders them): a key starts once every key it depends on that
// comes before it in keys has finished or been detached, and a slot is free. Waiting only on
// earlier keys cannot deadlock, whatever cycles the dependencies hold. With one slot, keys run
// one by one, in order. detach > 0 detaches a key that runs longer (0: wait for every key).
// It returns the errors of the keys that finished, in the order of keys.
func (s *scheduler) run(keys []objKey, deps func(objKey) []objKey, detach time.Duration, run func(objKey) error) []error {
	errs := make([]error, len(keys))
	if cap(s.slots) == 1 {
		for i, k := range keys {
			s.slots <- struct{}{}
			errs[i] = run(k)
			<-s.slots
		}
		return compact(errs)
	}
	pos := make(map[objKey]int, len(keys))
	done := make([]chan struct{}, len(keys))
	for i, k := range keys {
		pos[k] = i
		done[i] = make(chan struct{})
	}
	var wg sync.WaitGroup
	for i, k := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(done[i])
			for _, d := range deps(k) {
				if j, ok := pos[d]; ok && j < i {
					<-done[j]
				}
			}
			s.slots <- struct{}{}
			finished := make(chan error, 1)
			go func() { finished <- run(k) }()
			var timeout <-chan time.Time
			if detach > 0 {
				t := time.NewTimer(detach)
				defer t.Stop()
				timeout = t.C
			}
			select {
			case errs[i] = <-finished:
				<-s.slots
			case <-timeout:
				s.mu.Lock()
				s.running[k] = true
				s.mu.Unlock()
				s.bg.Add(1)
				go func() {
					defer s.bg.Done()
					<-finished // its outcome is in its status, log and Events
					s.mu.Lock()
					delete(s.running, k)
					s.mu.Unlock()
					<-s.slots
				}()
			}
		}()
	}
	wg.Wait()
	return compact(errs)
}

// compact drops the nil errors of errs.
func compact(errs []error) []error {
	out := errs[:0]
	for _, err := range errs {
		if err != nil {
			out = append(out, err)
		}
	}
	return out
}
