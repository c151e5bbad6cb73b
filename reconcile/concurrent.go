package reconcile

import (
	"sync"
)

// runOrdered calls run for every key of keys, which are in dependency order (each key after
// the keys it depends on, as planGraph orders them), up to n at once: a key starts once
// every key it depends on that comes before it in keys has finished. Waiting only on earlier
// keys cannot deadlock, whatever cycles the dependencies hold. n < 2 runs them one by one,
// in order. It returns run's errors in the order of keys.
func runOrdered(n int, keys []objKey, deps func(objKey) []objKey, run func(objKey) error) []error {
	errs := make([]error, len(keys))
	if n < 2 {
		for i, k := range keys {
			errs[i] = run(k)
		}
		return compact(errs)
	}
	pos := make(map[objKey]int, len(keys))
	done := make([]chan struct{}, len(keys))
	for i, k := range keys {
		pos[k] = i
		done[i] = make(chan struct{})
	}
	slots := make(chan struct{}, n)
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
			slots <- struct{}{}
			defer func() { <-slots }()
			errs[i] = run(k)
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
